"""Buffers (BN statistics) equal on every rank after each training iteration."""
from mmengine.hooks import SyncBuffersHook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SyncBuffersEveryIterHook(SyncBuffersHook):
    """mmengine's :class:`SyncBuffersHook` (which averages the buffers over the ranks after each epoch and
    before validation), also after every training iteration, before the checkpoint hook saves rank 0's:
    the last validation then sees the buffers of the checkpoint saved with it. Needed where BN layers
    keep rank-local statistics (SyncBN replaced by BN on CPUs); SyncBN keeps them equal by itself."""

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.after_train_epoch(runner)
