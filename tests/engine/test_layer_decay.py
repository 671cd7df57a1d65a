"""LayerDecayOptimWrapperConstructor: per-block learning rates and the groups without weight decay."""
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

from lape_mm import LaPEViT
from lape_mm.engine import vit_layer_id

from conftest import tiny_vit_kwargs


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
