"""Refuse a checkpoint that does not fit the model exactly, listing the keys that differ.

mmengine loads ``load_from`` / ``--resume`` / inferencer weights with ``strict=False``: a checkpoint of another
model only logs its mismatched keys, and evaluation then scores random weights, with exit code 0."""
import re
from collections import Counter

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..checkpoint import CheckpointError
from ..models.backbones.checkpoint_fit import state_dict_diff

SHOWN_KEYS = 10
ADVICE = {
    'test': 'tools/test.py evaluates a checkpoint written by training this config (work_dirs/CONFIG/'
            'iter_N.pth or epoch_N.pth); pass one of those, or the config that wrote this checkpoint.',
    'infer': 'pass a checkpoint written by training this config, or the config that wrote this checkpoint.',
    'resume': 'it is not a checkpoint of this config: --resume continues a run of this config from one of '
              'its own checkpoints. To start from other weights, set model.backbone.init_cfg='
              "dict(type='Pretrained', checkpoint=PATH) (a pretraining or backbone checkpoint) or "
              'load_from=PATH (a whole model of this config) instead.',
}


def _listing(title: str, items: list[str]) -> str:
    """``N title (per top-level module: count): the first keys``, e.g. ``neck: 16, decode_head: 60``."""
    per_module = ', '.join(f'{name}: {n}' for name, n in Counter(k.split('.')[0] for k in items).items())
    more = f', ... ({len(items) - SHOWN_KEYS} more)' if len(items) > SHOWN_KEYS else ''
    return f'{len(items)} {title} ({per_module}): {", ".join(items[:SHOWN_KEYS])}{more}'


def check_checkpoint_fits(model: nn.Module, checkpoint: dict, source: str, purpose: str) -> None:
    """Raise :class:`CheckpointError` unless ``checkpoint`` holds exactly ``model``'s weights."""
    model = model.module if is_model_wrapper(model) else model
    state_dict = {re.sub(r'^module\.', '', k): v for k, v in checkpoint.get('state_dict', checkpoint).items()}
    titles = ('model keys missing from the checkpoint', 'checkpoint keys the model does not have', 'shapes that differ')
    if mismatch := [_listing(t, keys) for t, keys in zip(titles, state_dict_diff(model, state_dict)) if keys]:
        raise CheckpointError(f'checkpoint {source} does not fit the model:\n  ' + '\n  '.join(mismatch)
                              + f'\n{ADVICE[purpose]}')


@HOOKS.register_module()
class StrictCheckpointHook(Hook):
    """Checks the checkpoint the Runner loads (``load_from`` or ``--resume``) before any of it is used."""

    priority = 'VERY_HIGH'

    def __init__(self, checkpoint: str, purpose: str):
        if purpose not in ADVICE:
            raise ValueError(f'purpose must be one of {sorted(ADVICE)}, got {purpose!r}')
        self.checkpoint, self.purpose = checkpoint, purpose

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        check_checkpoint_fits(runner.model, checkpoint, self.checkpoint, self.purpose)
