# Baseline twin of segmenter_lape_vit_s_mask_ade20k.py: standard PE join, everything else identical.
_base_ = './segmenter_lape_vit_s_mask_ade20k.py'
model = dict(backbone=dict(pe_join='add'))
