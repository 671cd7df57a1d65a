"""Refuse a checkpoint that does not fit the model exactly, listing the keys that differ.

mmengine loads ``load_from`` / ``--resume`` / inferencer weights with ``strict=False``: a checkpoint of another
model only logs its mismatched keys, and training or evaluation then goes on with random weights, exit code 0."""
import re

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import find_latest_checkpoint

from ..models.backbones.checkpoint_fit import check_fits
from .phase import is_training

ADVICE = {
    'test': 'Evaluate a checkpoint written by training this config (work_dirs/CONFIG/iter_N.pth or epoch_N.pth), '
            'or pass the config that wrote this checkpoint.',
    'infer': 'Pass a checkpoint written by training this config, or the config that wrote this checkpoint.',
    'resume': 'It is not a checkpoint of this config: --resume continues a run of this config from one of its own '
              'checkpoints. To start from other weights, use --pretrained PATH (a pretraining or backbone '
              'checkpoint) or load_from=PATH (a whole model of this config) instead.',
    'load_from': 'load_from starts training from a whole model of this config (a checkpoint it wrote). To start '
                 "the backbone from a pretrained ViT (timm, DeiT, mmseg, mmpretrain), use --pretrained PATH or "
                 "model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH) instead.",
}


def check_checkpoint_fits(model: nn.Module, checkpoint: dict, source: str, purpose: str) -> None:
    """Raise :class:`~lape_mm.errors.CheckpointError` unless ``checkpoint`` holds exactly ``model``'s weights."""
    model = model.module if is_model_wrapper(model) else model
    state_dict = {re.sub(r'^module\.', '', k): v for k, v in checkpoint.get('state_dict', checkpoint).items()}
    check_fits(model, state_dict, f'checkpoint {source}', ADVICE[purpose])


@HOOKS.register_module()
class StrictCheckpointHook(Hook):
    """Checks the checkpoint the Runner loads (``load_from``, ``resume``, a tool's checkpoint argument) before
    any of it is used."""

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        source = runner._load_from or find_latest_checkpoint(runner.work_dir)
        purpose = 'resume' if runner._resume else 'load_from' if is_training(runner) else 'test'
        check_checkpoint_fits(runner.model, checkpoint, source, purpose)
