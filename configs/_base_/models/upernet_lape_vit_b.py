# UPerNet + LaPEViT-B/16: mmseg's UPerNet ViT-B model with the backbone replaced.
_base_ = ['mmseg::_base_/models/upernet_vit-b16_ln_mln.py']

# ImageNet-pretrained LaPE-DeiT-B (configs/pretrain/, or the authors' / any DeiT, timm, mmseg,
# mmpretrain ViT-B checkpoint: the format is detected and converted on load).
pretrained = 'pretrain/lape_deit_base_in1k.pth'
model = dict(
    pretrained=None,
    # Test images keep their aspect ratio (e.g. 512x683): pad them to whole 16-pixel patches.
    data_preprocessor=dict(test_cfg=dict(size_divisor=16)),
    backbone=dict(
        _delete_=True,
        type='LaPEViT',
        arch='base',
        img_size=(512, 512),  # the PE grid: a 224 checkpoint's 14x14 PE is resized once on load
        patch_size=16,
        pe_join='lape',
        pe_type='learnable',
        out_indices=(2, 5, 8, 11),
        drop_path_rate=0.1,
        final_norm=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
