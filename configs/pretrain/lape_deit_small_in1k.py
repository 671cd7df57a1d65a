# LaPE-DeiT-S/16 on ImageNet-1K: the DeiT-Ti recipe (lape_deit_tiny_in1k.py) at DeiT-S width.
# mmpretrain's DeiT-S config differs from its DeiT-Ti config in exactly these keys.
_base_ = './lape_deit_tiny_in1k.py'
model = dict(backbone=dict(arch='small'), head=dict(in_channels=384))
