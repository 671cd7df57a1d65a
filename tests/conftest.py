"""Shared fixtures and helpers: small models, building from configs, running tools/."""
import contextlib
import copy
import io
import logging
import os
import re
import runpy
import shlex
import signal
import socket
import subprocess
import sys
from importlib import import_module
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.registry import init_default_scope

import lape_mm  # noqa: F401  (registers models, safe checkpoint globals)
from lape_mm.models import LaPEViTAdapter


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _live_log_streams():
    """mmengine's loggers outlive a test, and a Runner built in-process gave them handlers on that test's
    captured stdout, closed since: point those at this test's, as a fresh process would have them."""
    from mmengine.logging import MMLogger
    for logger in list(MMLogger._instance_dict.values()):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, 'closed', False):
                handler.stream = sys.stdout  # (setStream would flush the closed one first)


def tiny_vit_kwargs(**overrides) -> dict:
    """A 3-block ViT small enough for exhaustive CPU tests (img_size 64 -> 4x4 PE grid)."""
    kwargs = dict(arch='tiny', embed_dims=64, num_layers=3, num_heads=4, img_size=64, patch_size=16)
    kwargs.update(overrides)
    return kwargs


@contextlib.contextmanager
def forward_counts(modules: dict):
    """``{name: calls}`` of each module in ``modules`` while the block runs; a forward that activation
    checkpointing reruns in backward counts again (a pre-hook: the rerun stops once it has what backward needs)."""
    counts = dict.fromkeys(modules, 0)
    handles = [module.register_forward_pre_hook(lambda *_, name=name: counts.update({name: counts[name] + 1}))
               for name, module in modules.items()]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def randomize_norms(model: torch.nn.Module) -> None:
    """Give every LayerNorm non-trivial affine parameters, and open every 'add_lape' gate (``pe_gate``),
    so equivalence tests can fail."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
            elif name.endswith('pe_gate'):
                m.gamma.uniform_(0.5, 1.5)


# A ViT-Adapter of 4 blocks in two stages, windows of 3 except the last block of each stage; a 4x4 PE grid.
TINY_ADAPTER = dict(arch='tiny', embed_dims=48, num_layers=4, num_heads=3, img_size=64, patch_size=16,
                    interaction_indexes=[[0, 1], [2, 3]], window_size=3, global_attn_indexes=(1, 3),
                    conv_inplane=8, n_points=2, deform_num_heads=6, adapter_norm_cfg=dict(type='BN'))


def tiny_adapter(**overrides) -> LaPEViTAdapter:
    return LaPEViTAdapter(**{**TINY_ADAPTER, **overrides})


def randomize_adapter(model: torch.nn.Module) -> None:
    """Random values everywhere, so that no term of the equations can hide: gammas, norms and BN
    statistics included (the default init has zero injector gammas and unit norms)."""
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith('running_var'):
                tensor.uniform_(0.5, 2.)
            elif name.endswith(('norm.weight', 'gamma')) or (tensor.dim() == 1 and name.endswith('weight')):
                tensor.uniform_(0.5, 1.5)  # norm scales and gammas: around 1
            elif tensor.is_floating_point():
                tensor.normal_(0, 0.2)


ROOT = Path(__file__).resolve().parents[1]


def build_model(model_cfg: dict, scope: str) -> torch.nn.Module:
    """``model_cfg`` built by ``scope``'s registry (mmseg, mmdet, mmpretrain), as that library's
    Runner does; from a copy, since mmdet's TwoStageDetector writes into its roi_head config."""
    init_default_scope(scope)
    return import_module(f'{scope}.registry').MODELS.build(copy.deepcopy(model_cfg))


def build_dataset(dataset_cfg: dict, scope: str):
    """``dataset_cfg`` built by ``scope``'s registry (mmseg, mmdet, mmpretrain), as that library's Runner does."""
    init_default_scope(scope)
    return import_module(f'{scope}.registry').DATASETS.build(copy.deepcopy(dataset_cfg))


def runner_stub(tmp_path, training: bool = True, **attributes) -> SimpleNamespace:
    """What the hooks read of a Runner: a built train loop while it trains (a config dict otherwise)."""
    from unittest.mock import MagicMock
    from mmengine.runner import BaseLoop
    loop = MagicMock(spec=BaseLoop) if training else dict(type='IterBasedTrainLoop')
    return SimpleNamespace(work_dir=str(tmp_path), _train_loop=loop, **attributes)


def run_process(cmd: list[str], timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``cmd`` from the repo root, output captured, in a session of its own: on a timeout, a test
    failure or an interrupt, the whole process group (torchrun's workers included) is killed."""
    full_env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '2'),
                **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_process_group(proc)
        stdout, stderr = proc.communicate()
        raise AssertionError(f'{shlex.join(map(str, cmd))} ran past {timeout} s:\n{(stdout + stderr)[-6000:]}')
    finally:
        kill_process_group(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def kill_process_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """Stop what is left of ``proc``'s process group (started with ``start_new_session=True``): SIGTERM,
    which torchrun passes on to its workers (they run in sessions of their own, out of the group's
    reach), then after up to ``grace`` seconds SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):  # the group is gone already
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    proc.wait()


def free_port() -> int:
    """A TCP port free now (the OS picks it), for a process group's rendezvous."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tool_command(*args: str) -> list[str]:
    """``tools/x.py ...`` run by this interpreter; ``tools/x.sh ...`` as it is."""
    return [sys.executable, *args] if args[0].endswith('.py') else list(args)


def run_tool(*args: str, timeout: float = 600, env: dict | None = None) -> str:
    """Run ``tools/<args>`` as a user would (a subprocess from the repo root); return its output."""
    proc = run_process(tool_command(*args), timeout, env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{" ".join(proc.args)} failed ({proc.returncode}):\n{output[-6000:]}'
    return output


def run_main(script: str, *args: str) -> str:
    """``tools/<script>`` run in this process, as ``python tools/<script> args`` would run it,
    without a new interpreter's start-up (seconds of imports); returns what it printed. A failure
    (an exception, ``sys.exit('message')``) propagates; ``sys.exit(0)`` (``--help``) is success."""
    argv, threads = sys.argv, torch.get_num_threads()
    sys.argv = [script, *args]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(ROOT / script), run_name='__main__')
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)  # e.g. tools/benchmark.py --threads
    return out.getvalue()


def run_tool_here(capsys, tool: str, *args: str) -> tuple[int, str]:
    """``tools/<tool>.py args`` run in this process as from a shell; its exit code and stderr."""
    try:
        run_main(f'tools/{tool}.py', *args)
    except SystemExit as exit_:
        return exit_.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def assert_one_line_usage_error(code: int, err: str, *fragments: str) -> None:
    """What tools/cli.py makes of a user's mistake: exit code 2, no traceback, the fragments in the last line,
    and nothing before it but argparse's usage."""
    lines = err.strip().splitlines()
    assert code == 2 and 'Traceback' not in err, err
    assert all(fragment in lines[-1] for fragment in fragments), err
    assert not [line for line in lines[:-1] if not line.startswith('usage:') and not line.startswith(' ')], err


@pytest.fixture(scope='session')
def tiny_ade(tmp_path_factory):
    """A small tiny-ADE dataset (16 train / 6 val images), made once per session."""
    from tools.tiny_data import make_tiny_ade
    return make_tiny_ade(tmp_path_factory.mktemp('tiny_ade'), num_train=16, num_val=6, seed=1)


def logged_metrics(output: str, names: str) -> dict[str, str]:
    """The last value, as printed, of every metric a run logged whose name matches the regex ``names``
    (e.g. ``'aAcc|mIoU|mAcc'``, ``r'coco/\w+'``): what train-then-test comparisons check."""
    return dict(re.findall(rf'\b({names}): ([\d.]+|nan|-?inf)', output))


def logged_losses(output: str) -> list[float]:
    """Every total ``loss`` a run logged, NaN and inf included (what finiteness checks are for)."""
    return [float(v) for v in re.findall(r' loss: (\S+)', output)]


def assert_baseline_twin(lape_cfg, add_cfg) -> None:
    """An ``_add`` config differs from its LaPE config only in ``pe_join`` and, where the backbone
    is initialised from a checkpoint, in using the ``_add``-pretrained one."""
    lape_bb, add_bb = lape_cfg.model.backbone, add_cfg.model.backbone
    assert add_bb.pop('pe_join') == 'add' and lape_bb.pop('pe_join') == 'lape'
    if lape_bb.get('init_cfg'):
        lape_ckpt, add_ckpt = lape_bb.init_cfg.pop('checkpoint'), add_bb.init_cfg.pop('checkpoint')
        assert add_ckpt == lape_ckpt.replace('.pth', '_add.pth')
    assert add_cfg.to_dict() == lape_cfg.to_dict()
