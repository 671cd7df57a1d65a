# Mask R-CNN + LaPE ViT-Adapter-T + FPN on COCO, 3x + multi-scale: the LaPE paper's COCO setting
# (ViT-Adapter-Ti + Mask R-CNN: +0.7 box AP / +0.5 mask AP over the _add twin), with ViT-Adapter's
# recipe (czczup/ViT-Adapter detection/configs/mask_rcnn/mask_rcnn_deit_adapter_tiny_fpn_3x_coco.py):
# DeiT-T with windows of 14 except blocks 2/5/8/11, layer scale, 4 interactions; DETR-style
# multi-scale resize/crop then a 1024x1024 crop; AdamW lr 1e-4, wd 0.05, no decay on norms, biases,
# pos_embed and level_embed; 36 epochs, lr x0.1 at 27 and 33, 500 warm-up iterations; 8 GPUs x 2.
# Published ViT-Adapter-T (standard PE): 46.0 box AP / 41.0 mask AP. Departure: the weights are
# LaPE-DeiT-T (configs/pretrain/), pretrained with the PE join this config uses.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/models/lape_vit_adapter_t.py',
    './_base_/lape_runtime.py',
]
model = dict(
    backbone=dict(_base_.lape_vit_adapter_t, window_size=14, global_attn_indexes=(2, 5, 8, 11), init_values=0.),
    neck=dict(in_channels=[192, 192, 192, 192]))

# DETR's augmentation (mmdet's detr config) with masks, then ViT-Adapter's 1024x1024 crop.
scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333), (672, 1333),
          (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', scales=scales, keep_ratio=True)],
        [dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
         dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
         dict(type='RandomChoiceResize', scales=scales, keep_ratio=True)],
    ]),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=(1024, 1024), allow_negative_crop=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'level_embed': dict(decay_mult=0.),
        'pos_embed': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
        'bias': dict(decay_mult=0.),
    }))
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(type='PruneAfterSaveCheckpointHook', backend_args=dict(backend='atomic_local'),
                                     interval=1, max_keep_ckpts=3, save_best='auto'))
auto_scale_lr = dict(base_batch_size=16)
