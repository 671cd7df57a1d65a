# Mask R-CNN + LaPEViT-T/16 + SimpleFPN on COCO: the ViT-B recipe at DeiT-Ti width (192, 3 heads),
# the backbone size of the paper's COCO result (ViT-Adapter-Ti + Mask R-CNN: +0.7 box AP for LaPE).
_base_ = './mask_rcnn_lape_vit_b_simplefpn_coco.py'
model = dict(
    backbone=dict(arch='tiny', init_cfg=dict(checkpoint='pretrain/lape_deit_tiny_in1k.pth')),
    neck=dict(in_channels=192))
