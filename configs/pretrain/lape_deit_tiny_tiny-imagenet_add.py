# Baseline twin of lape_deit_tiny_tiny-imagenet.py: the standard PE join (DeiT), all else identical.
_base_ = './lape_deit_tiny_tiny-imagenet.py'
model = dict(backbone=dict(pe_join='add'))
