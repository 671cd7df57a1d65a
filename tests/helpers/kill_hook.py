"""Test helpers: hooks that SIGKILL their own process, to test resuming a killed run."""
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def _kill_self(*args) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class KillAtIterHook(Hook):
    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            _kill_self()


@HOOKS.register_module()
class KillDuringSaveHook(Hook):
    """SIGKILL while the checkpoint of ``iteration`` is being written: its bytes are in the
    ``.tmp-*`` file, which is about to be synced and renamed."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if runner.iter + 1 == self.iteration:
            os.fsync = _kill_self


@HOOKS.register_module()
class KillRankOnceHook(Hook):
    """SIGKILL rank ``rank`` after iteration ``iteration`` of a torchrun job's first try only, so
    that the group torchrun restarts runs to the end."""

    def __init__(self, iteration: int, rank: int):
        self.iteration = iteration
        self.rank = rank

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        first_try = os.environ.get('TORCHELASTIC_RESTART_COUNT') == '0'
        if first_try and runner.rank == self.rank and runner.iter + 1 == self.iteration:
            _kill_self()
