# CPU-sized UPerNet + LaPEViT-T on the tiny ADE20K-layout dataset: the `make demo` run.
# Same model family as upernet_lape_vit_b.py at ViT-T width with thinner heads, from scratch.
_base_ = [
    './_base_/models/upernet_lape_vit_b.py',
    './_base_/datasets/tiny_ade.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/tiny_300it.py',
    './_base_/lape_runtime.py',
]
crop_size = (128, 128)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='tiny', img_size=crop_size, drop_path_rate=0.0, init_cfg=None),
    neck=dict(in_channels=[192] * 4, out_channels=192),
    decode_head=dict(in_channels=[192] * 4, channels=128, num_classes=150),
    auxiliary_head=dict(in_channels=192, channels=64, num_classes=150))
randomness = dict(seed=0)
