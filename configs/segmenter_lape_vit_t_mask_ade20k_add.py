# Baseline twin of segmenter_lape_vit_t_mask_ade20k.py: standard PE join, everything else identical.
_base_ = './segmenter_lape_vit_t_mask_ade20k.py'
model = dict(backbone=dict(pe_join='add'))
