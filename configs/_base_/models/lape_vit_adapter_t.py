# LaPE ViT-Adapter-T: ViT-Adapter's DeiT-T adapter (czczup/ViT-Adapter, *_deit_adapter_tiny_*): layer
# scale, spatial prior CNN of 64 channels, four interactions, from LaPE-DeiT-T (configs/pretrain/),
# pretrained with the PE join this config uses. The COCO and ADE20K configs put it in as
# model.backbone=dict(lape_vit_adapter_t, ...) and add what their recipe differs in.

pretrained = 'pretrain/lape_deit_tiny_in1k.pth'
lape_vit_adapter_t = dict(
    _delete_=True,  # replaces the upstream model's ResNet
    type='LaPEViTAdapter',
    arch='tiny',
    img_size=224,  # the PE grid of the ImageNet checkpoint, resized to each input on the fly
    patch_size=16,
    pe_join='lape',
    pe_type='learnable',
    drop_path_rate=0.1,
    layer_scale=True,
    adapter_norm_cfg=dict(type='SyncBN', requires_grad=True),  # BN on CPU (lape_mm's launcher)
    conv_inplane=64,
    n_points=4,
    deform_num_heads=6,
    cffn_ratio=0.25,
    deform_ratio=1.0,
    interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]],
    init_cfg=dict(type='Pretrained', checkpoint=pretrained))
