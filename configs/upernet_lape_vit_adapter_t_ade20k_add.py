# Baseline twin of upernet_lape_vit_adapter_t_ade20k.py: the standard PE join (ViT-Adapter's own),
# initialised from the checkpoint pretrained with it (or any DeiT/timm ViT-T); all else identical.
_base_ = './upernet_lape_vit_adapter_t_ade20k.py'
model = dict(backbone=dict(pe_join='add', init_cfg=dict(checkpoint='pretrain/lape_deit_tiny_in1k_add.pth')))
