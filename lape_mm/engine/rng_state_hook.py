"""Save and restore every RNG state with checkpoints, so a resumed run continues bit-identically.

mmengine's resume re-seeds but does not restore where the generators were, so dropout masks (and anything
else drawn in the main process) after a resume differ from an uninterrupted run."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def get_rng_states() -> dict:
    states = {'torch': torch.get_rng_state(), 'numpy': np.random.get_state(), 'python': random.getstate()}
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Store RNG states in each checkpoint; restore them at the first training iteration after a
    resume (by then mmengine's IterBasedTrainLoop has skipped the batches already trained)."""

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending: dict | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_states'] = get_rng_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('rng_states')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if (states := self._pending) is not None:
            torch.set_rng_state(states['torch'])
            np.random.set_state(states['numpy'])
            random.setstate(states['python'])
            if 'cuda' in states and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states['cuda'])
            self._pending = None
