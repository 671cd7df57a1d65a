# Baseline twin of mask_rcnn_lape_vit_t_simplefpn_coco.py: the standard PE join, initialised from the checkpoint pretrained
# with it (configs/pretrain/*_add.py, or any DeiT/timm ViT of this width); all else identical.
_base_ = './mask_rcnn_lape_vit_t_simplefpn_coco.py'
model = dict(backbone=dict(pe_join='add', init_cfg=dict(checkpoint='pretrain/lape_deit_tiny_in1k_add.pth')))
