# Segmenter + LaPEViT-S/16 on ADE20K: the tiny recipe at ViT-S width (mmseg's vit-s mask config).
_base_ = './segmenter_lape_vit_t_mask_ade20k.py'
pretrained = 'pretrain/lape_deit_small_in1k.pth'
model = dict(
    backbone=dict(arch='small', init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=384, channels=384, num_heads=6, embed_dims=384))
