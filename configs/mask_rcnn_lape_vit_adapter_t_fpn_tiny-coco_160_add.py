# Baseline twin of mask_rcnn_lape_vit_adapter_t_fpn_tiny-coco_160.py: the standard PE join, all else identical.
_base_ = './mask_rcnn_lape_vit_adapter_t_fpn_tiny-coco_160.py'
model = dict(backbone=dict(pe_join='add'))
