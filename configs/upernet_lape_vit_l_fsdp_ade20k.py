# UPerNet + LaPEViT-L/16 on ADE20K, 640x640, 160k iterations, trained with FSDP (configs/_base_/fsdp.py):
# each of N ranks keeps 1/N of the parameters, gradients and AdamW states (docs/benchmark.md).
# Follows mmseg's BEiT-L UPerNet recipe (beit-large_upernet_8xb1-160k_ade20k-640x640: 8 GPUs x 1 image,
# 2-step gradient accumulation, AdamW lr 2e-5 / wd 0.05, layer-wise lr decay 0.95 over 24 blocks, 3000
# warm-up iterations, drop path 0.2, features of blocks 8/12/16/24, 1024-channel UPerHead, sliding-window
# test 640 / stride 426) with two differences: bf16 autocast instead of fp16 with loss scaling (bf16 needs
# no scaling; `--amp` leaves it on), and a plain ViT-L/16 ImageNet checkpoint (timm/DeiT/mmpretrain layout,
# converted on load; LaPE's pe_norm layers start as identity) instead of BEiT's.
_base_ = [
    './_base_/models/upernet_lape_vit_b.py',
    'mmseg::_base_/datasets/ade20k_640x640.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    './_base_/fsdp.py',
    './_base_/lape_runtime.py',
]
crop_size = (640, 640)
pretrained = 'pretrain/vit_large_patch16_224.pth'
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='large',
        img_size=crop_size,
        out_indices=(7, 11, 15, 23),
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[1024] * 4, out_channels=1024),
    decode_head=dict(in_channels=[1024] * 4, channels=1024, num_classes=150),
    auxiliary_head=dict(in_channels=1024, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))

optim_wrapper = dict(
    _delete_=True,
    type='AutocastOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=2e-5, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(num_layers=24, layer_decay_rate=0.95),
    accumulative_counts=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=3000),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=3000, end=160000, by_epoch=False),
]

# 8 GPUs x 1 image x 2 accumulated steps = batch 16, as in mmseg.
train_dataloader = dict(batch_size=1)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(checkpoint=dict(type='PruneAfterSaveCheckpointHook', backend_args=dict(backend='atomic_local')))
