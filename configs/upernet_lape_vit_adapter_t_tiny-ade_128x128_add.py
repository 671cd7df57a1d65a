# Baseline twin of upernet_lape_vit_adapter_t_tiny-ade_128x128.py: the standard PE join, all else identical.
_base_ = './upernet_lape_vit_adapter_t_tiny-ade_128x128.py'
model = dict(backbone=dict(pe_join='add'))
