# The DeiT-Ti pretraining recipe on the tiny ImageNet-layout dataset (tools/make_tiny_imagenet.py,
# data/tiny_imagenet), sized for a CPU: same model, augmentation, loss and optimizer as
# lape_deit_tiny_in1k.py at 128x128 (an 8x8 PE grid, as upernet_lape_vit_t_tiny-ade_128x128.py
# uses, so the checkpoint's PE fits that config unresized), 4 epochs of 13 iterations.
_base_ = './lape_deit_tiny_in1k.py'
data_root = 'data/tiny_imagenet'
num_classes = 10
max_epochs = 4
crop_size = 128

model = dict(backbone=dict(img_size=crop_size), head=dict(num_classes=num_classes))
# mmpretrain's ImageNet pipelines (imagenet_bs64_swin_224.py) with 128 for 224, 146 for 256.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=crop_size, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10, magnitude_level=9,
         magnitude_std=0.5, hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02, max_area_ratio=1 / 3,
         fill_color={{_base_.bgr_mean}}, fill_std={{_base_.bgr_std}}),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=146, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='PackInputs'),
]
data_preprocessor = dict(num_classes=num_classes)
# mmpretrain's ImageNet fixes the 1000 ImageNet classes; CustomDataset reads the same folder
# layout with the classes found there.
train_dataloader = dict(
    batch_size=16, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=1, persistent_workers=True,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

# DeiT's lr rule (5e-4 * 16 / 512) barely moves a model in 50 steps: 1e-3, the rule's value at 1024.
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(max_keep_ckpts=1))
