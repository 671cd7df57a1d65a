# Baseline twin of segmenter_lape_vit_t_mask_ade20k.py: the standard PE join, initialised from the checkpoint pretrained
# with it (configs/pretrain/*_add.py, or any DeiT/timm ViT of this width); all else identical.
_base_ = './segmenter_lape_vit_t_mask_ade20k.py'
model = dict(backbone=dict(pe_join='add', init_cfg=dict(checkpoint='pretrain/lape_deit_tiny_in1k_add.pth')))
