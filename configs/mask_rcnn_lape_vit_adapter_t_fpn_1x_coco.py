# The 1x variant of mask_rcnn_lape_vit_adapter_t_fpn_3x_coco.py, as ViT-Adapter's
# mask_rcnn_deit_adapter_tiny_fpn_1x_coco.py: mmdet's single-scale 1333x800 pipeline, 12 epochs
# (lr x0.1 at 8 and 11), AdamW lr 2e-4, wd 0.01. Published ViT-Adapter-T: 41.1 box AP / 37.5 mask AP.
_base_ = './mask_rcnn_lape_vit_adapter_t_fpn_3x_coco.py'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.01))
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
