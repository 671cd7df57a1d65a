# Baseline twin of mask_rcnn_lape_vit_adapter_s_fpn_3x_coco.py: the standard PE join, initialised from
# the checkpoint pretrained with it; all else identical.
_base_ = './mask_rcnn_lape_vit_adapter_s_fpn_3x_coco.py'
model = dict(backbone=dict(pe_join='add', init_cfg=dict(checkpoint='pretrain/lape_deit_small_in1k_add.pth')))
