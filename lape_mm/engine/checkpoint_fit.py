"""Refuse a checkpoint that does not fit the model exactly, listing the keys that differ.

mmengine loads ``load_from`` / ``--resume`` / inferencer weights with ``strict=False``: keys that
do not match are only logged, so a checkpoint of another architecture, a backbone-only file or one
without ``pos_embed`` gives metrics and masks of a randomly initialised model, with exit code 0.
"""
from __future__ import annotations

import re
from collections import Counter

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..checkpoint.safe_load import CheckpointError

SHOWN_KEYS = 10
ADVICE = {
    'test': 'tools/test.py evaluates a checkpoint written by training this config (work_dirs/CONFIG/'
            'iter_N.pth or epoch_N.pth); pass one of those, or the config that wrote this checkpoint.',
    'infer': 'inference needs a checkpoint written by training this config; pass one of those, or the '
             'config that wrote this checkpoint.',
    'resume': 'it is not a checkpoint of this config: --resume continues a run of this config from one of '
              'its own checkpoints. To start from other weights, set model.backbone.init_cfg='
              "dict(type='Pretrained', checkpoint=PATH) (a pretraining or backbone checkpoint) or "
              'load_from=PATH (a whole model of this config) instead.',
}


def state_dict_of(checkpoint: dict) -> dict:
    """The model weights of an mmengine checkpoint, without DDP's ``module.`` prefix."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    return {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}


def _listing(title: str, items: list[str]) -> str:
    """``N title (per top-level module: count): the first keys``, e.g. a backbone-only file shows
    ``neck: 16, decode_head: 60``."""
    per_module = ', '.join(f'{name}: {n}' for name, n in Counter(k.split('.')[0] for k in items).items())
    more = f', ... ({len(items) - SHOWN_KEYS} more)' if len(items) > SHOWN_KEYS else ''
    return f'{len(items)} {title} ({per_module}): {", ".join(items[:SHOWN_KEYS])}{more}'


def state_dict_mismatch(model: nn.Module, state_dict: dict) -> list[str]:
    """One line per kind of difference (missing, unexpected, other shape); empty if it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    reshaped = [f'{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}' for k, v in state_dict.items()
                if k in own and getattr(v, 'shape', None) != own[k].shape]
    return [_listing(title, items) for title, items in (
        ('model keys missing from the checkpoint', missing), ('checkpoint keys the model does not have', unexpected),
        ('shapes that differ', reshaped)) if items]


def check_checkpoint_fits(model: nn.Module, checkpoint: dict, source: str, purpose: str) -> None:
    """Raise :class:`CheckpointError` unless ``checkpoint`` holds exactly ``model``'s weights."""
    if is_model_wrapper(model):
        model = model.module
    if mismatch := state_dict_mismatch(model, state_dict_of(checkpoint)):
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
