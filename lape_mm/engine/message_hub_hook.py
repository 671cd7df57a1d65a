"""Checkpoints whose ``message_hub`` loads weights-only.

mmengine pickles the logged scalars as ``HistoryBuffer`` objects that carry their statistics functions as
``getattr(HistoryBuffer, 'mean')``, and ``torch.load(weights_only=True)`` (torch>=2.6's default, which
mmengine's resume and tools/test.py use) refuses ``getattr``: allowing it would allow any attribute."""
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.registry import HOOKS

PLAIN = 'plain_history_buffer'


@HOOKS.register_module()
class MessageHubStateHook(Hook):
    """Saves each logged scalar's history as tensors, and makes ``HistoryBuffer`` objects of them again
    on load, before the Runner restores its message hub."""

    priority = 'VERY_HIGH'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        scalars = checkpoint.get('message_hub', {}).get('log_scalars', {})
        for key, buffer in scalars.items():
            if isinstance(buffer, HistoryBuffer):
                scalars[key] = {PLAIN: True, 'max_length': buffer.max_length,
                                'log': torch.from_numpy(buffer._log_history), 'count': torch.from_numpy(
                                    buffer._count_history)}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        scalars = checkpoint.get('message_hub', {}).get('log_scalars', {})
        for key, value in scalars.items():
            if isinstance(value, dict) and value.get(PLAIN):
                scalars[key] = HistoryBuffer(value['log'].numpy(), value['count'].numpy(), value['max_length'])
