"""Engine pieces: atomic checkpoint writes, safe resume globals, layer decay, bf16 autocast."""
import os

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


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    target = tmp_path / 'iter_1.pth'
    assert isinstance(get_file_backend(str(target)), AtomicLocalBackend)
    save_checkpoint({'state_dict': {'w': torch.ones(2)}}, str(target))
    assert torch.equal(safe_load(target)['state_dict']['w'], torch.ones(2))

    def crash(*args):
        raise OSError('disk full')
    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(OSError, match='disk full'):
        save_checkpoint({'state_dict': {'w': torch.zeros(2)}}, str(target))
    assert torch.equal(safe_load(target)['state_dict']['w'], torch.ones(2))  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_1.pth']  # no temporary left


def test_mmengine_training_state_loads_weights_only(tmp_path):
    """What a Runner checkpoint holds (HistoryBuffer, numpy, RNG states) passes weights_only."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('lape_mm_test')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('iter', 3)
    path = tmp_path / 'ckpt.pth'
    torch.save({'message_hub': hub.state_dict(), 'meta': {'seed': 0}, 'rng_states': get_rng_states()}, path)
    loaded = torch.load(path, weights_only=True)  # the torch>=2.6 default that stock mmengine hits
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == 0.5


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


def test_rng_state_hook_restores_every_generator_once_after_resume():
    """The states saved with a checkpoint come back at the first iteration after --resume (after mmengine
    re-seeds), so torch, numpy and Python draw what the unbroken run drew; later iterations go on."""
    import random
    import numpy as np
    from lape_mm.engine import RNGStateHook
    hook, checkpoint = RNGStateHook(), {}
    hook.before_save_checkpoint(None, checkpoint)
    unbroken = torch.rand(3), np.random.rand(3), random.random()
    hook.after_load_checkpoint(None, checkpoint)
    torch.manual_seed(123), np.random.seed(123), random.seed(123)  # what mmengine's resume does
    hook.before_train_iter(None, 0)
    resumed = torch.rand(3), np.random.rand(3), random.random()
    assert torch.equal(resumed[0], unbroken[0]) and np.array_equal(resumed[1], unbroken[1])
    assert resumed[2] == unbroken[2]
    hook.before_train_iter(None, 1)
    assert not torch.equal(torch.rand(3), unbroken[0])


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


def test_mmcv_nms_and_roi_align_run_under_cpu_bf16():
    """mmdet hands mmcv's CPU NMS / RoIAlign bf16 tensors under --amp; they compute in fp32."""
    from mmcv.ops import RoIAlign, batched_nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = batched_nms(boxes.bfloat16(), scores.bfloat16(), torch.zeros(3, dtype=torch.long),
                             dict(type='nms', iou_threshold=0.5))
    assert keep.tolist() == [0, 2] and dets.dtype == torch.bfloat16
    feats, rois = torch.randn(1, 4, 16, 16), torch.tensor([[0., 2., 2., 9., 9.]])
    align = RoIAlign((3, 3), spatial_scale=1., sampling_ratio=2)
    out = align(feats.bfloat16(), rois.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), align(feats, rois), atol=0.05, rtol=0.02)


@pytest.mark.parametrize('dtype,wrapper', [(None, 'AutocastOptimWrapper'), ('bfloat16', 'AutocastOptimWrapper'),
                                           ('float16', 'AmpOptimWrapper')])
def test_amp_dtype_selects_the_optim_wrapper(dtype, wrapper):
    """tools/train.py --amp [--amp-dtype]: bf16 autocast by default without CUDA; fp16 brings loss scaling."""
    from mmengine.config import Config
    from tools.launch import enable_amp
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))))
    enable_amp(cfg, dtype)
    assert cfg.optim_wrapper.type == wrapper
    assert cfg.optim_wrapper.get('loss_scale') == ('dynamic' if dtype == 'float16' else None)
