"""mmengine's CheckpointHook, but an old checkpoint is deleted only once the new one is complete.

Stock ``max_keep_ckpts`` removes the oldest checkpoint *before* writing the new one, so a run
killed during that save (at ``max_keep_ckpts=1``) is left with no checkpoint at all, and its
``last_checkpoint`` names the deleted file.
"""
from __future__ import annotations

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PruneAfterSaveCheckpointHook(CheckpointHook):
    """:class:`CheckpointHook` that saves first and prunes the checkpoint beyond
    ``max_keep_ckpts`` afterwards; same arguments and same files otherwise."""

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        expired = self._take_expired_step(step)
        super()._save_checkpoint_with_step(runner, step, meta)
        if expired is not None and is_main_process():
            self._remove_step(expired)

    def _take_expired_step(self, step: int) -> int | None:
        """Drop the oldest kept step when saving ``step`` will exceed ``max_keep_ckpts``, so the
        parent neither removes it nor leaves it in ``keep_ckpt_ids``; return it for removal."""
        kept = getattr(self, 'keep_ckpt_ids', None)
        if self.max_keep_ckpts <= 0 or not kept or kept[-1] == step or len(kept) < self.max_keep_ckpts:
            return None
        return kept.popleft()

    def _remove_step(self, step: int) -> None:
        path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(step))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
            self.file_backend.rmtree(path)
