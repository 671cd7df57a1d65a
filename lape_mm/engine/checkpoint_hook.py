"""mmengine's CheckpointHook, but an old checkpoint is deleted only once the new one is complete.

Stock ``max_keep_ckpts`` removes the oldest checkpoint *before* writing the new one, so a run killed during
that save (at ``max_keep_ckpts=1``) has no checkpoint left, and ``last_checkpoint`` names the deleted file."""
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PruneAfterSaveCheckpointHook(CheckpointHook):
    """:class:`CheckpointHook` that prunes beyond ``max_keep_ckpts`` after saving; same arguments and files."""

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        # Take the oldest kept step out first, so the parent neither removes it nor keeps it listed.
        kept = getattr(self, 'keep_ckpt_ids', ())
        expired = kept.popleft() if 0 < self.max_keep_ckpts <= len(kept) and kept[-1] != step else None
        super()._save_checkpoint_with_step(runner, step, meta)
        if expired is None or not is_main_process():
            return
        path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(expired))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
            self.file_backend.rmtree(path)
