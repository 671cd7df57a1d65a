"""Shared fixtures: small models and a deterministic torch set-up."""
import re

import pytest
import torch

import lape_mm  # noqa: F401  (registers models, safe checkpoint globals)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_vit_kwargs(**overrides) -> dict:
    """A 3-block ViT small enough for exhaustive CPU tests (img_size 64 -> 4x4 PE grid)."""
    kwargs = dict(arch='tiny', embed_dims=64, num_layers=3, num_heads=4, img_size=64, patch_size=16)
    kwargs.update(overrides)
    return kwargs


def randomize_norms(model: torch.nn.Module) -> None:
    """Give every LayerNorm non-trivial affine parameters so equivalence tests can fail."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)


ROOT = __import__('pathlib').Path(__file__).resolve().parents[1]


def run_tool(*args: str, timeout: int = 600, env: dict | None = None) -> str:
    """Run ``tools/<args>`` as a user would (a subprocess from the repo root); return its output."""
    import os
    import subprocess
    import sys
    full_env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '2'),
                **(env or {})}
    cmd = [sys.executable, *args] if args[0].endswith('.py') else list(args)
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{" ".join(cmd)} failed ({proc.returncode}):\n{output[-6000:]}'
    return output


@pytest.fixture(scope='session')
def tiny_ade(tmp_path_factory):
    """A small tiny-ADE dataset (16 train / 6 val images), made once per session."""
    from tools.tiny_data import make_tiny_ade
    return make_tiny_ade(tmp_path_factory.mktemp('tiny_ade'), num_train=16, num_val=6, seed=1)


def logged_metrics(output: str, names: str) -> dict[str, str]:
    """The last value, as printed, of every metric a run logged whose name matches the regex ``names``
    (e.g. ``'aAcc|mIoU|mAcc'``, ``r'coco/\w+'``): what train-then-test comparisons check."""
    return dict(re.findall(rf'\b({names}): ([\d.]+)', output))


def assert_baseline_twin(lape_cfg, add_cfg) -> None:
    """An ``_add`` config differs from its LaPE config only in ``pe_join`` and, where the backbone
    is initialised from a checkpoint, in using the ``_add``-pretrained one."""
    lape_bb, add_bb = lape_cfg.model.backbone, add_cfg.model.backbone
    assert add_bb.pop('pe_join') == 'add' and lape_bb.pop('pe_join') == 'lape'
    if lape_bb.get('init_cfg'):
        lape_ckpt, add_ckpt = lape_bb.init_cfg.pop('checkpoint'), add_bb.init_cfg.pop('checkpoint')
        assert add_ckpt == lape_ckpt.replace('.pth', '_add.pth')
    assert add_cfg.to_dict() == lape_cfg.to_dict()
