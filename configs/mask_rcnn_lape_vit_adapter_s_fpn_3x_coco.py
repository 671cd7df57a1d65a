# Mask R-CNN + LaPE ViT-Adapter-S + FPN on COCO, 3x + multi-scale: the ViT-Adapter-T recipe at DeiT-S
# width (384, 6 heads) with drop path 0.2, as ViT-Adapter's mask_rcnn_deit_adapter_small_fpn_3x_coco.py.
_base_ = './mask_rcnn_lape_vit_adapter_t_fpn_3x_coco.py'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.2, init_cfg=dict(checkpoint='pretrain/lape_deit_small_in1k.pth')),
    neck=dict(in_channels=[384, 384, 384, 384]))
