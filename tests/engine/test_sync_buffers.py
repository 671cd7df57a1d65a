"""SyncBuffersEveryIterHook: buffers averaged after every training iteration."""
from types import SimpleNamespace

import torch.nn as nn


def test_buffers_are_averaged_after_every_training_iteration(monkeypatch):
    """Before the checkpoint hook saves rank 0's buffers, so validation and the checkpoint agree."""
    from mmengine.hooks import sync_buffer_hook
    from lape_mm.engine import SyncBuffersEveryIterHook
    reduced = []
    monkeypatch.setattr(sync_buffer_hook, 'all_reduce_params', lambda params, op: reduced.append((list(params), op)))
    hook = SyncBuffersEveryIterHook()
    hook.distributed = True
    model = nn.BatchNorm1d(3)
    hook.after_train_iter(SimpleNamespace(model=model), 0)
    assert len(reduced) == 1 and reduced[0][1] == 'mean' and len(reduced[0][0]) == 3  # mean, var, count
    assert hook.priority == 'NORMAL'  # runs before the CheckpointHook (VERY_LOW)
