"""Engine pieces: atomic checkpoint writes, weights-only checkpoints, RNG states, layer decay, bf16 autocast."""
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.fileio import get_file_backend
from mmengine.optim import build_optim_wrapper
from mmengine.runner.checkpoint import save_checkpoint

from lape_mm import LaPEViT
from lape_mm.checkpoint import safe_load
from lape_mm.engine import AtomicLocalBackend, vit_layer_id
from tools.launch import replace_sync_bn
from lape_mm.engine.rng_state_hook import get_rng_states

from conftest import tiny_vit_kwargs


ATOMIC = dict(backend='atomic_local')  # what configs/_base_/lape_runtime.py gives the checkpoint hook


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    target = tmp_path / 'iter_1.pth'
    assert isinstance(get_file_backend(str(target), backend_args=ATOMIC), AtomicLocalBackend)
    save_checkpoint({'state_dict': {'w': torch.ones(2)}}, str(target), backend_args=ATOMIC)
    assert torch.equal(safe_load(target)['state_dict']['w'], torch.ones(2))

    def crash(*args):
        raise OSError('disk full')
    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(OSError, match='disk full'):
        save_checkpoint({'state_dict': {'w': torch.zeros(2)}}, str(target), backend_args=ATOMIC)
    assert torch.equal(safe_load(target)['state_dict']['w'], torch.ones(2))  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_1.pth']  # no temporary left


def test_atomic_writes_through_a_symbolic_link_keep_the_link(tmp_path):
    """A work dir's checkpoint may be a link into other storage: the link stays and its target is new."""
    storage, work = tmp_path / 'storage', tmp_path / 'work'
    storage.mkdir(), work.mkdir()
    (storage / 'latest.pth').write_bytes(b'old')
    (work / 'latest.pth').symlink_to(storage / 'latest.pth')
    AtomicLocalBackend().put(b'new', work / 'latest.pth')
    AtomicLocalBackend().put_text('iter_1.pth', work / 'last_checkpoint')
    assert (work / 'latest.pth').is_symlink() and (storage / 'latest.pth').read_bytes() == b'new'
    assert (work / 'last_checkpoint').read_text() == 'iter_1.pth'
    assert sorted(p.name for p in [*storage.iterdir(), *work.iterdir()]) == ['last_checkpoint', 'latest.pth',
                                                                             'latest.pth']


def test_atomic_write_onto_a_folder_is_refused_before_any_work(tmp_path):
    from lape_mm.fileio import atomic_write
    with pytest.raises(IsADirectoryError, match='is a folder'):
        with atomic_write(tmp_path):
            raise AssertionError('the block must not run')
    assert not list(tmp_path.iterdir())


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


class _Segmentor(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = LaPEViT(**tiny_vit_kwargs(rope='mixed'))
        self.decode_head = nn.Linear(64, 3)


def test_layer_decay_lrs_and_no_decay_groups():
    model = _Segmentor()
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
        constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay_rate=0.5)))
    lr_of, wd_of = {}, {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            lr_of[p], wd_of[p] = group['lr'], group['weight_decay']
    bb = model.backbone
    assert lr_of[bb.pos_embed] == 0.5 ** 4 and wd_of[bb.pos_embed] == 0  # layer 0 of 3 blocks
    assert lr_of[bb.blocks[0].attn.qkv.weight] == 0.5 ** 3 and wd_of[bb.blocks[0].attn.qkv.weight] == 0.05
    assert lr_of[bb.blocks[2].pe_norm.weight] == 0.5 and wd_of[bb.blocks[2].pe_norm.weight] == 0
    assert lr_of[bb.rope.freqs] == 0.5 ** 4 and wd_of[bb.rope.freqs] == 0  # embeddings, no decay (as RoPE-ViT)
    assert lr_of[model.decode_head.weight] == 1.0 and wd_of[model.decode_head.bias] == 0
    assert len(lr_of) == sum(1 for _ in model.parameters())
    assert vit_layer_id('backbone.blocks.11.mlp.fc1.weight', 12) == 12


def test_autocast_optim_wrapper_trains_in_bf16_on_cpu():
    """The forward runs in bf16 and one update_params is one SGD step on the bf16 loss's gradient:
    ``w - lr * grad``, with the gradient from a plain torch.autocast reference; fp32 weights stay fp32."""
    import copy
    model = nn.Linear(8, 8)
    reference = copy.deepcopy(model)
    wrapper = build_optim_wrapper(model, dict(type='AutocastOptimWrapper', optimizer=dict(type='SGD', lr=0.1)))
    x = torch.randn(4, 8)
    with wrapper.optim_context(model):
        out = model(x)
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().square().mean())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        reference_out = reference(x)
    reference_out.float().square().mean().backward()
    for param, ref in zip(model.parameters(), reference.parameters()):
        assert param.dtype == torch.float32 and ref.grad.abs().sum() > 0
        assert not torch.equal(param, ref)  # the step changed the weights
        torch.testing.assert_close(param, ref.detach().add(ref.grad, alpha=-0.1), rtol=0, atol=0)
        assert param.grad is None or not param.grad.any()  # and cleared the gradients for the next one


def _batches():
    """Batches loaded in the main process (num_workers=0): each draws from every global generator."""
    import random
    import numpy as np
    while True:
        yield torch.rand(2), np.random.rand(2), random.random()


def _same(a, b) -> bool:
    import numpy as np
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def _reseed() -> None:
    """What mmengine does when a run starts (resumed or not)."""
    import random
    import numpy as np
    torch.manual_seed(0), np.random.seed(0), random.seed(0)


def test_rng_states_come_back_just_before_the_first_batch_after_the_skipped_ones():
    """Iteration-based resume at iteration 2: the loop skips 2 batches (drawing them), then draws batch 3
    from the states of the checkpoint, even where validation ran between the checkpoint and batch 3."""
    from lape_mm.engine import RNGStateHook
    _reseed()
    hook, checkpoint, unbroken = RNGStateHook(), {}, _batches()
    next(unbroken), next(unbroken)
    hook.before_save_checkpoint(None, checkpoint)
    hook.before_val(None)
    torch.rand(7)  # validation draws too (its dataloader's seed)
    hook.after_val(None)
    expected = next(unbroken), next(unbroken)

    _reseed()
    resumed = RNGStateHook()
    resumed.after_load_checkpoint(None, checkpoint)
    runner = SimpleNamespace(iter=2, train_loop=SimpleNamespace(dataloader_iterator=_batches()))
    resumed.before_train_epoch(runner)
    batches = runner.train_loop.dataloader_iterator
    next(batches), next(batches)  # IterBasedTrainLoop skips the trained batches
    assert all(_same(next(batches), batch) for batch in expected)


def test_rng_states_come_back_at_the_next_epoch_and_not_for_load_from():
    from lape_mm.engine import RNGStateHook
    _reseed()
    hook, checkpoint = RNGStateHook(), {}
    hook.before_save_checkpoint(None, checkpoint)
    expected = next(_batches())
    for iteration, restored in ((8, True), (0, False)):  # a resumed epoch-based run; load_from (a new run)
        _reseed()
        next(_batches())
        hook.after_load_checkpoint(None, checkpoint)
        hook.before_train_epoch(SimpleNamespace(iter=iteration, train_loop=SimpleNamespace()))
        assert _same(next(_batches()), expected) == restored


def test_replace_sync_bn_walks_the_whole_config():
    cfg = dict(decode_head=dict(norm_cfg=dict(type='SyncBN')), heads=[dict(norm_cfg=dict(type='SyncBN'))],
               backbone=dict(norm_cfg=dict(type='LN')))
    assert replace_sync_bn(cfg) == 2
    assert cfg['decode_head']['norm_cfg']['type'] == 'BN' and cfg['backbone']['norm_cfg']['type'] == 'LN'


def test_missing_pretrained_checkpoints_are_found(tmp_path):
    from tools.launch import missing_pretrained
    present = tmp_path / 'deit.pth'
    present.write_bytes(b'')
    model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=str(present))),
                 neck=[dict(init_cfg=dict(type='Pretrained', checkpoint='pretrain/missing.pth'))],
                 head=dict(init_cfg=dict(type='Pretrained', checkpoint='https://host/remote.pth')))
    assert missing_pretrained(model) == ['pretrain/missing.pth']


def test_mmcv_nms_and_roi_align_run_under_cpu_bf16_during_a_run():
    """mmdet hands mmcv's CPU NMS / RoIAlign bf16 tensors under --amp; they compute in fp32 between the
    hook's before_run and after_run, and are mmcv's own again afterwards."""
    import sys
    from mmcv.ops import RoIAlign, batched_nms
    from lape_mm.engine import MMCVOpsCPUAutocastHook
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    ops = {name: getattr(sys.modules[f'mmcv.ops.{name}'], name) for name in ('nms', 'roi_align')}
    hook = MMCVOpsCPUAutocastHook()
    hook.before_run(None)
    try:
        dets, keep = batched_nms(boxes.bfloat16(), scores.bfloat16(), torch.zeros(3, dtype=torch.long),
                                 dict(type='nms', iou_threshold=0.5))
        feats, rois = torch.randn(1, 4, 16, 16), torch.tensor([[0., 2., 2., 9., 9.]])
        align = RoIAlign((3, 3), spatial_scale=1., sampling_ratio=2)
        out = align(feats.bfloat16(), rois.bfloat16())
    finally:
        hook.after_run(None)
    assert keep.tolist() == [0, 2] and dets.dtype == torch.bfloat16
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), align(feats, rois), atol=0.05, rtol=0.02)
    assert {name: getattr(sys.modules[f'mmcv.ops.{name}'], name) for name in ops} == ops


@pytest.mark.parametrize('cuda, dtype, wrapper', [
    (False, None, 'AutocastOptimWrapper'), (False, 'bfloat16', 'AutocastOptimWrapper'),
    (False, 'float16', 'AmpOptimWrapper'), (True, None, 'AmpOptimWrapper'), (True, 'bfloat16', 'AutocastOptimWrapper'),
    (True, 'float16', 'AmpOptimWrapper')])
def test_amp_dtype_selects_the_optim_wrapper(monkeypatch, cuda, dtype, wrapper):
    """tools/train.py --amp [--amp-dtype]: bf16 autocast by default without CUDA, fp16 with loss scaling
    by default with CUDA (mocked either way, so the test means the same on every machine)."""
    from mmengine.config import Config
    from tools.launch import enable_amp
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))))
    enable_amp(cfg, dtype)
    assert cfg.optim_wrapper.type == wrapper
    assert cfg.optim_wrapper.get('loss_scale') == ('dynamic' if wrapper == 'AmpOptimWrapper' else None)
    assert cfg.optim_wrapper.get('dtype') == ('bfloat16' if wrapper == 'AutocastOptimWrapper' else None)


def _runner(tmp_path, training: bool = True, **attributes) -> SimpleNamespace:
    """What the hooks read of a Runner: a built train loop while it trains (a config dict otherwise)."""
    from unittest.mock import MagicMock
    from mmengine.runner import BaseLoop
    loop = MagicMock(spec=BaseLoop) if training else dict(type='IterBasedTrainLoop')
    return SimpleNamespace(work_dir=str(tmp_path), _train_loop=loop, **attributes)


def test_work_dir_lock_is_held_by_rank_0_of_a_training_run_only(tmp_path, monkeypatch):
    from lape_mm.engine import WorkDirLockHook
    from lape_mm.engine import work_dir_lock
    from lape_mm.errors import WorkDirBusyError
    (tmp_path / '.tmp-123iter_2.pth').write_bytes(b'half')  # a save that a kill interrupted
    hook = WorkDirLockHook()
    hook.before_run(_runner(tmp_path, training=False))  # runner.test(): no lock, nothing removed
    assert (tmp_path / '.tmp-123iter_2.pth').exists()
    monkeypatch.setattr(work_dir_lock, 'is_main_process', lambda: False)
    hook.before_run(_runner(tmp_path))  # rank 1
    work_dir_lock.lock_work_dir(str(tmp_path)).close()  # free
    monkeypatch.setattr(work_dir_lock, 'is_main_process', lambda: True)
    hook.before_run(_runner(tmp_path))
    assert not (tmp_path / '.tmp-123iter_2.pth').exists()
    with pytest.raises(WorkDirBusyError, match=str(tmp_path)):
        work_dir_lock.lock_work_dir(str(tmp_path))
    hook.after_run(None)
    work_dir_lock.lock_work_dir(str(tmp_path)).close()  # released


@pytest.mark.parametrize('resume,training,advice', [(True, True, '--resume continues a run of this config'),
                                                    (False, True, 'load_from starts training from a whole model'),
                                                    (False, False, 'Evaluate a checkpoint written by training')])
def test_strict_checkpoint_hook_refuses_what_does_not_fit_for_every_purpose(tmp_path, resume, training, advice):
    from lape_mm.engine import StrictCheckpointHook
    from lape_mm.errors import CheckpointError
    model = LaPEViT(**tiny_vit_kwargs())
    runner = _runner(tmp_path, training, model=model, _load_from=str(tmp_path / 'other.pth'), _resume=resume)
    StrictCheckpointHook().after_load_checkpoint(runner, {'state_dict': model.state_dict()})  # fits: silent
    state_dict = {k: v for k, v in model.state_dict().items() if k != 'norm.bias'}
    with pytest.raises(CheckpointError, match=f'(?s)other.pth does not fit.*norm.bias.*{advice}'):
        StrictCheckpointHook().after_load_checkpoint(runner, {'state_dict': state_dict})


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
