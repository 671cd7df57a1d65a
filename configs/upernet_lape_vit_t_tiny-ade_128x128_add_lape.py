# The function-keeping start, for a plain ViT-T checkpoint (DeiT-T, timm's vit_tiny, ...): pe_join='add_lape'
# adds the PE to the input as the checkpoint's ViT did, and gives each block LaPE's per-layer PE through a
# per-channel gate that starts at 0. Step 0 computes the checkpoint's function; the gates learn from step 1.
_base_ = './upernet_lape_vit_t_tiny-ade_128x128.py'
model = dict(backbone=dict(pe_join='add_lape', init_cfg=dict(  # _delete_: the base has init_cfg=None
    _delete_=True, type='Pretrained', checkpoint='pretrain/deit_tiny_patch16_224.pth')))
