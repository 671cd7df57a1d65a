# RoPE-Mixed alone (naver's, learnable frequencies per block and head; no absolute PE) in
# upernet_lape_vit_t_tiny-ade_128x128.py. naver's rope_mixed_ape is pe_type='learnable', pe_join='add'.
_base_ = './upernet_lape_vit_t_tiny-ade_128x128.py'
model = dict(backbone=dict(rope='mixed', pe_type='none'))
