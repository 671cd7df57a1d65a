# UPerNet + LaPEViT-B/16 on ADE20K, 512x512, 160k iterations, 8 GPUs x 2 images.
# Follows mmseg's vit_deit-b16-ln_mln_upernet_8xb2-160k_ade20k-512x512 (data, heads, schedule,
# drop path 0.1, final norm) with one difference: AdamW with layer-wise lr decay 0.65, lr 1e-4,
# weight decay 0.05, as in mmseg's MAE/BEiT UPerNet recipes, instead of flat lr 6e-5 / wd 0.01.
_base_ = [
    './_base_/models/upernet_lape_vit_b.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    './_base_/lape_runtime.py',
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]

# 8 GPUs x 2 images = batch 16, as in mmseg.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
default_hooks = dict(checkpoint=dict(type='PruneAfterSaveCheckpointHook', backend_args=dict(backend='atomic_local')))
