# CPU-sized Segmenter (mask transformer head) + LaPEViT-T on the tiny ADE20K-layout dataset:
# the model of segmenter_lape_vit_t_mask_ade20k.py from scratch at 128x128, with the tiny
# dataset and AdamW schedule of upernet_lape_vit_t_tiny-ade_128x128.py (the paper's SGD lr 1e-3
# barely moves a model trained from scratch in 300 iterations).
_base_ = [
    'mmseg::_base_/models/segmenter_vit-b16_mask.py',
    './_base_/datasets/tiny_ade.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/schedules/tiny_300it.py',
    './_base_/lape_runtime.py',
]
crop_size = (128, 128)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size, test_cfg=dict(size_divisor=16)),
    backbone=dict(
        _delete_=True,
        type='LaPEViT',
        arch='tiny',
        img_size=crop_size,
        patch_size=16,
        pe_join='lape',
        pe_type='learnable',
        out_indices=-1,
        drop_path_rate=0.0,
        final_norm=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        init_cfg=None),
    decode_head=dict(in_channels=192, channels=192, num_heads=3, embed_dims=192),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(96, 96)))
randomness = dict(seed=0)
