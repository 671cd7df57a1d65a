# CPU-sized UPerNet + LaPE ViT-Adapter-T on the tiny ADE20K-layout set: upernet_lape_vit_t_tiny-ade_128x128.py
# (thin heads, 300 iterations from scratch) with ViT-Adapter-T as in upernet_lape_vit_adapter_t_ade20k.py.
# Test images (128 high, any width) are padded to multiples of 32, which the adapter needs. The spatial
# prior CNN is a quarter as wide (conv_inplane 16, not 64), to keep this run at a few CPU minutes.
# No MultiLevelNeck: the adapter's maps are already at strides 4 to 32, as UPerNet takes them.
_base_ = './upernet_lape_vit_t_tiny-ade_128x128.py'
model = dict(
    data_preprocessor=dict(test_cfg=dict(size_divisor=32)),
    backbone=dict(
        _delete_=True,
        type='LaPEViTAdapter',
        arch='tiny',
        img_size=(128, 128),
        pe_join='lape',
        layer_scale=True,
        conv_inplane=16,
        adapter_norm_cfg=dict(type='SyncBN', requires_grad=True),  # BN on CPU (lape_mm's launcher)
        interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]],
        vit_features='stages'),
    neck=None)
