"""One tiny config per model family, the data it trains on, and overrides that shrink a run
through ``tools/`` to a few iterations: shared by the end-to-end, multi-process and CUDA tests."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mmengine.config import Config

from tools.tiny_data import make_tiny_ade, make_tiny_coco, make_tiny_imagenet


ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TinyRun:
    """``config`` trained on data that ``make_data(folder)`` writes (returning its root), with
    ``options(root)`` as config overrides; the run ends by writing ``checkpoint`` in its work dir."""
    config: str
    make_data: Callable[[Path], Path]
    options: Callable[[Path], dict]
    checkpoint: str


def seg_options(root: Path, iters: int = 2, ckpt_interval: int | None = None, **extra) -> dict:
    """``iters`` iterations of 2 images per process, evaluated at the end, checkpoints every
    ``ckpt_interval`` (default: at the end); 4 blocks."""
    return {'train_dataloader.dataset.data_root': root, 'val_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.data_root': root, 'model.backbone.num_layers': 4,
            'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
            'default_hooks.checkpoint.interval': ckpt_interval or iters, 'default_hooks.logger.interval': 1,
            'train_dataloader.batch_size': 2, 'randomness.seed': 0, **extra}


def det_options(root: Path, **extra) -> dict:
    """One epoch of 8 images, 2 per process and iteration, then COCO evaluation (2 blocks)."""
    ann = f'{root}/annotations/instances_val2017.json'
    return {'train_dataloader.dataset.dataset.data_root': root, 'val_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.data_root': root, 'val_evaluator.ann_file': ann, 'test_evaluator.ann_file': ann,
            'model.backbone.num_layers': 2, 'model.backbone.global_attn_indexes': [1],
            'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1, 'default_hooks.checkpoint.interval': 1,
            'train_dataloader.batch_size': 2, 'default_hooks.logger.interval': 1, **extra}


def cls_options(root: Path, **extra) -> dict:
    """Two epochs (the warm-up takes one) of 40 images, 8 per process and iteration (2 blocks)."""
    return {'train_dataloader.dataset.data_root': root, 'val_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.data_root': root, 'model.backbone.num_layers': 2,
            'train_dataloader.batch_size': 8, 'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 2,
            'default_hooks.logger.interval': 1, **extra}


UPERNET_LAYERS = {'model.backbone.out_indices': [0, 1, 2, 3]}  # one map per block of the 4-block UPerNet
ADAPTER_LAYERS = {'model.backbone.num_layers': 4, 'model.backbone.interaction_indexes': [[0, 0], [1, 1], [2, 2], [3, 3]]}
UPERNET = TinyRun('configs/upernet_lape_vit_t_tiny-ade_128x128.py',
                  lambda out: make_tiny_ade(out, num_train=8, num_val=4, seed=1),
                  lambda root: seg_options(root, **UPERNET_LAYERS), 'iter_2.pth')
SEGMENTER = TinyRun('configs/segmenter_lape_vit_t_mask_tiny-ade_128x128.py',
                    lambda out: make_tiny_ade(out, num_train=8, num_val=4, seed=1), seg_options, 'iter_2.pth')
MASK_RCNN = TinyRun('configs/mask_rcnn_lape_vit_t_simplefpn_tiny-coco_160.py',
                    lambda out: make_tiny_coco(out, num_train=8, num_val=3, seed=1), det_options, 'epoch_1.pth')
DEIT = TinyRun('configs/pretrain/lape_deit_tiny_tiny-imagenet.py',
               lambda out: make_tiny_imagenet(out, train_per_class=4, val_per_class=1), cls_options, 'epoch_2.pth')
ADAPTER = TinyRun('configs/mask_rcnn_lape_vit_adapter_t_fpn_tiny-coco_160.py',
                  lambda out: make_tiny_coco(out, num_train=8, num_val=3, seed=1),
                  lambda root: det_options(root, **{**ADAPTER_LAYERS, 'model.backbone.global_attn_indexes': [3]}),
                  'epoch_1.pth')
TINY_SEG = UPERNET.config
# One entry per model family; a new family is one line here.
FAMILIES = {'upernet': UPERNET, 'segmenter': SEGMENTER, 'mask_rcnn': MASK_RCNN, 'deit': DEIT, 'vit_adapter': ADAPTER}


def cfg_options(options: dict) -> list[str]:
    """``options`` as ``tools/`` arguments: ``--cfg-options k=v ...`` (lists without spaces).
    The one builder of such arguments in the tests."""
    return ['--cfg-options', *(f'{k}={str(v).replace(" ", "")}' for k, v in options.items())]


def small_run_options(data_root: Path, iters: int = 4, ckpt_interval: int = 2, **extra) -> list[str]:
    """--cfg-options that shrink the tiny UPerNet config (``TINY_SEG``) to seconds: 4 blocks, few iterations."""
    return cfg_options(seg_options(data_root, iters, ckpt_interval, **{**UPERNET_LAYERS, **extra}))


def derived_config(folder: Path, body: str) -> str:
    """A config file in ``folder`` inheriting the tiny UPerNet config, for overrides --cfg-options
    cannot express."""
    path = folder / 'derived_config.py'
    path.write_text(f"_base_ = '{ROOT / TINY_SEG}'\n{body}")
    return str(path)


HOOK_HELPERS = ROOT / 'tests' / 'helpers'  # kill_hook.py: hooks that SIGKILL their own process


def hook_env() -> dict:
    """The environment of a tool run whose config imports ``kill_hook`` (``HOOK_HELPERS`` on PYTHONPATH)."""
    return {'PYTHONPATH': os.pathsep.join(filter(None, (str(HOOK_HELPERS), os.environ.get('PYTHONPATH'))))}


def hook_config(folder: Path, hook: str, base: str = TINY_SEG) -> str:
    """A config in ``folder`` inheriting ``base`` with the hook ``hook`` (a ``dict(...)`` text from
    ``tests/helpers/kill_hook.py``; run it with :func:`hook_env`) after the config's own hooks."""
    path = folder / 'hook_config.py'
    path.write_text(f"_base_ = '{ROOT / base}'\n"
                    f"custom_imports = dict(imports=['lape_mm', 'kill_hook'], allow_failed_imports=False)\n"
                    f"custom_hooks = _base_.custom_hooks + [{hook}]\n")
    return str(path)


def tiny_seg_config() -> Config:
    """The tiny UPerNet config (``TINY_SEG``) with 4 blocks, one feature map per block."""
    cfg = Config.fromfile(ROOT / TINY_SEG)
    cfg.model.backbone.num_layers = 4
    cfg.model.backbone.out_indices = (0, 1, 2, 3)
    return cfg
