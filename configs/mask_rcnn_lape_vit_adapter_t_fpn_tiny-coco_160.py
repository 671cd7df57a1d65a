# CPU-sized Mask R-CNN + LaPE ViT-Adapter-T + FPN on the tiny COCO-layout set: the data, light heads and
# 8-epoch schedule of mask_rcnn_lape_vit_t_simplefpn_tiny-coco_160.py with ViT-Adapter-T as in
# mask_rcnn_lape_vit_adapter_t_fpn_3x_coco.py, from scratch; windows of 5 tile the 10x10 token grid.
# The spatial prior CNN is a quarter as wide (conv_inplane 16, not 64): at 64 its stride-2/4 3x3
# convs cost about as much as the whole ViT-T, and this run is sized for a few CPU minutes.
# The FPN gets LayerNorm (LN2d, as SimpleFPN has) after its lateral and output convs: mmdet's FPN
# has no norm, and at this recipe's AdamW lr 1e-3 its outputs grew from std 2.4 to 130 in 50
# iterations (the convs turn towards the adapter maps' top principal directions; their weight
# norms stay put), which kept the box and mask heads at chance (docs/vit_adapter.md, tiny runs).
_base_ = './mask_rcnn_lape_vit_t_simplefpn_tiny-coco_160.py'
image_size = (160, 160)
model = dict(
    backbone=dict(
        _delete_=True,
        type='LaPEViTAdapter',
        arch='tiny',
        img_size=image_size,
        pe_join='lape',
        window_size=5,
        global_attn_indexes=(2, 5, 8, 11),
        layer_scale=True,
        conv_inplane=16,
        adapter_norm_cfg=dict(type='SyncBN', requires_grad=True),  # BN on CPU (lape_mm's launcher)
        interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]]),
    neck=dict(_delete_=True, type='FPN', in_channels=[192, 192, 192, 192], out_channels=64, num_outs=5,
              norm_cfg=dict(type='mmpretrain.LN2d', eps=1e-6)))
