"""One tiny config per model family, the data it trains on, and overrides that shrink a run
through ``tools/`` to a few iterations: shared by the multi-process and the CUDA tests."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tools.tiny_data import make_tiny_ade, make_tiny_coco, make_tiny_imagenet


@dataclass(frozen=True)
class TinyRun:
    """``config`` trained on data that ``make_data(folder)`` writes (returning its root), with
    ``options(root)`` as config overrides; the run ends by writing ``checkpoint`` in its work dir."""
    config: str
    make_data: Callable[[Path], Path]
    options: Callable[[Path], dict]
    checkpoint: str


def _seg_options(root: Path, **model) -> dict:
    """Two iterations of 2 images per process, then the evaluation (4 blocks)."""
    return {'train_dataloader.dataset.data_root': root, 'val_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.data_root': root, 'model.backbone.num_layers': 4, **model,
            'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2, 'default_hooks.checkpoint.interval': 2,
            'default_hooks.logger.interval': 1, 'train_dataloader.batch_size': 2}


def _det_options(root: Path) -> dict:
    """One epoch of 8 images, 2 per process and iteration, then COCO evaluation (2 blocks)."""
    ann = f'{root}/annotations/instances_val2017.json'
    return {'train_dataloader.dataset.dataset.data_root': root, 'val_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.data_root': root, 'val_evaluator.ann_file': ann, 'test_evaluator.ann_file': ann,
            'model.backbone.num_layers': 2, 'model.backbone.global_attn_indexes': [1],
            'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1, 'default_hooks.checkpoint.interval': 1,
            'train_dataloader.batch_size': 2, 'default_hooks.logger.interval': 1}


def _cls_options(root: Path) -> dict:
    """Two epochs (the warm-up takes one) of 40 images, 8 per process and iteration (2 blocks)."""
    return {'train_dataloader.dataset.data_root': root, 'val_dataloader.dataset.data_root': root,
            'test_dataloader.dataset.data_root': root, 'model.backbone.num_layers': 2,
            'train_dataloader.batch_size': 8, 'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 2,
            'default_hooks.logger.interval': 1}


UPERNET = TinyRun('configs/upernet_lape_vit_t_tiny-ade_128x128.py',
                  lambda out: make_tiny_ade(out, num_train=8, num_val=4, seed=1),
                  lambda root: _seg_options(root, **{'model.backbone.out_indices': [0, 1, 2, 3]}), 'iter_2.pth')
SEGMENTER = TinyRun('configs/segmenter_lape_vit_t_mask_tiny-ade_128x128.py',
                    lambda out: make_tiny_ade(out, num_train=8, num_val=4, seed=1), _seg_options, 'iter_2.pth')
MASK_RCNN = TinyRun('configs/mask_rcnn_lape_vit_t_simplefpn_tiny-coco_160.py',
                    lambda out: make_tiny_coco(out, num_train=8, num_val=3, seed=1), _det_options, 'epoch_1.pth')
DEIT = TinyRun('configs/pretrain/lape_deit_tiny_tiny-imagenet.py',
               lambda out: make_tiny_imagenet(out, train_per_class=4, val_per_class=1), _cls_options, 'epoch_2.pth')
ADAPTER = TinyRun('configs/mask_rcnn_lape_vit_adapter_t_fpn_tiny-coco_160.py',
                  lambda out: make_tiny_coco(out, num_train=8, num_val=3, seed=1),
                  lambda root: {**_det_options(root), 'model.backbone.num_layers': 4,
                                'model.backbone.interaction_indexes': [[0, 0], [1, 1], [2, 2], [3, 3]],
                                'model.backbone.global_attn_indexes': [3]}, 'epoch_1.pth')
# One entry per model family; a new family is one line here.
FAMILIES = {'upernet': UPERNET, 'segmenter': SEGMENTER, 'mask_rcnn': MASK_RCNN, 'deit': DEIT, 'vit_adapter': ADAPTER}


def cfg_options(options: dict) -> list[str]:
    """``options`` as ``tools/`` arguments: ``--cfg-options k=v ...`` (lists without spaces)."""
    return ['--cfg-options', *(f'{k}={str(v).replace(" ", "")}' for k, v in options.items())]
