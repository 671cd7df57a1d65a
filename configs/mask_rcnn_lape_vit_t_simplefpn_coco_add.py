# Baseline twin of mask_rcnn_lape_vit_t_simplefpn_coco.py: the standard PE join, all else identical.
_base_ = './mask_rcnn_lape_vit_t_simplefpn_coco.py'
model = dict(backbone=dict(pe_join='add'))
