# Baseline twin of lape_deit_base_in1k.py: the standard PE join (DeiT), all else identical.
_base_ = './lape_deit_base_in1k.py'
model = dict(backbone=dict(pe_join='add'))
