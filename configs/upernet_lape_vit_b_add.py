# Baseline twin of upernet_lape_vit_b.py: the standard ViT PE join, everything else identical.
_base_ = './upernet_lape_vit_b.py'
model = dict(backbone=dict(pe_join='add'))
