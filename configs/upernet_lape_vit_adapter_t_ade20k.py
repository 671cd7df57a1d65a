# UPerNet + LaPE ViT-Adapter-T on ADE20K, 512x512, 160k iterations, 8 GPUs x 2 images: ViT-Adapter's
# recipe (segmentation/configs/ade20k/upernet_deit_adapter_tiny_512_160k_ade20k.py): global attention
# in every block, layer scale, four interactions, each stage's ViT tokens added to its pyramid level
# (vit_features='stages', the original's segmentation variant), mmseg's UPerNet heads; AdamW lr 12e-5,
# wd 0.01, layer-wise lr decay 0.95; 1500 linear warm-up iterations, then poly; tested with a sliding
# 512 window (stride 341) on images resized to 2048x512 and to multiples of 32; trained with --amp.
# Departure: LaPE-DeiT-T weights (configs/pretrain/), pretrained with the PE join this config uses.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    './_base_/models/lape_vit_adapter_t.py',
    './_base_/lape_runtime.py',
]

crop_size = (512, 512)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size, test_cfg=dict(size_divisor=32)),
    backbone=dict(_base_.lape_vit_adapter_t, vit_features='stages'),
    decode_head=dict(in_channels=[192, 192, 192, 192], num_classes=150),
    auxiliary_head=dict(in_channels=192, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=12e-5, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.95))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
default_hooks = dict(checkpoint=dict(type='PruneAfterSaveCheckpointHook', backend_args=dict(backend='atomic_local')))
