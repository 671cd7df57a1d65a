"""MessageHubStateHook: mmengine's training state (logged scalars) in a weights-only checkpoint."""
import pytest
import torch

from lape_mm.engine.rng_state_hook import get_rng_states


def test_mmengine_training_state_loads_weights_only(tmp_path):
    """What a Runner checkpoint holds (logged scalars, numpy, RNG states) passes weights_only, through
    MessageHubStateHook, and comes back as mmengine's HistoryBuffer."""
    from mmengine.logging import HistoryBuffer, MessageHub
    from lape_mm.engine import MessageHubStateHook
    hub = MessageHub.get_instance('lape_mm_test')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/loss', 0.25, count=3)
    hub.update_info('iter', 3)
    checkpoint = {'message_hub': hub.state_dict(), 'meta': {'seed': 0}, 'rng_states': get_rng_states()}
    path = tmp_path / 'ckpt.pth'
    torch.save(checkpoint, path)
    with pytest.raises(Exception, match='HistoryBuffer was not an allowed global'):  # what stock mmengine writes
        torch.load(path, weights_only=True)
    MessageHubStateHook().before_save_checkpoint(None, checkpoint)
    torch.save(checkpoint, path)
    loaded = torch.load(path, weights_only=True)  # the torch>=2.6 default that mmengine's resume uses
    MessageHubStateHook().after_load_checkpoint(None, loaded)
    restored = MessageHub.get_instance('lape_mm_restored')
    restored.load_state_dict(loaded['message_hub'])
    buffer = restored.get_scalar('train/loss')
    assert isinstance(buffer, HistoryBuffer) and buffer.current() == 0.25
    assert buffer.data[0].tolist() == [0.5, 0.25] and buffer.data[1].tolist() == [1, 3]
