"""Save and restore every RNG state with checkpoints, so that a resumed run continues bit-identically.

mmengine's resume re-seeds but does not restore where the generators were, so dropout masks and random
augmentations drawn in the main process (all of them with ``num_workers=0``) differ from an uninterrupted run."""
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


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states['torch'])
    np.random.set_state(states['numpy'])
    random.setstate(states['python'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


class RestoreBeforeBatch:
    """An iteration-based loop's batch iterator that sets ``states`` just before drawing batch ``index``."""

    def __init__(self, iterator, index: int, states: dict):
        self.iterator, self.index, self.states, self.drawn = iterator, index, states, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.drawn == self.index:
            set_rng_states(self.states)
        self.drawn += 1
        return next(self.iterator)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Stores the RNG states in each checkpoint and, on resume, restores them right before the first batch
    after the resumed iteration is drawn: after the batches an iteration-based loop skips, at the start of
    the next epoch in an epoch-based one. Validation runs on a saved copy of the states, so that whether
    it ran between a checkpoint and the next iteration does not change training."""

    priority = 'VERY_LOW'

    def __init__(self):
        self._resumed: dict | None = None
        self._training: dict | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_states'] = get_rng_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._resumed = checkpoint.get('rng_states')

    def before_train_epoch(self, runner) -> None:
        states, self._resumed = self._resumed, None
        if states is None or runner.iter == 0:  # nothing loaded, or load_from (weights only): a new run
            return
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop: it skips runner.iter batches next
            loop.dataloader_iterator = RestoreBeforeBatch(loop.dataloader_iterator, runner.iter, states)
        else:
            set_rng_states(states)

    def before_val(self, runner) -> None:
        self._training = get_rng_states()

    def after_val(self, runner) -> None:
        if self._training is not None:
            set_rng_states(self._training)
            self._training = None
