# RoPE + LaPE hybrid of upernet_lape_vit_t_tiny-ade_128x128.py: axial RoPE (naver's RoPE-ViT, timm's layers)
# rotates q and k inside attention, beside the lape-joined absolute PE. RoPE alone: pe_type='none'.
_base_ = './upernet_lape_vit_t_tiny-ade_128x128.py'
model = dict(backbone=dict(rope='axial'))
