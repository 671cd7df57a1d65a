# CPU-sized Mask R-CNN + LaPEViT-T + SimpleFPN on the tiny COCO-layout set (tools/make_tiny_coco.py):
# the ViT-T COCO recipe from scratch at 160x160 with light heads (64 channels, mmdet's default
# 2fc box head, 2-conv mask head, fewer RoIs), a few minutes on 2 cores.
# Images are squared to 160x160 instead of large-scale jitter: the tiny set's classes depend on
# the image half an object lies in, and a fixed resize keeps each half at the same input rows.
_base_ = './mask_rcnn_lape_vit_t_simplefpn_coco.py'
data_root = 'data/tiny_coco/'
classes = ('person', 'car', 'bird', 'dog')  # tools.tiny_data.coco.CLASSES
image_size = (160, 160)
channels = 64
model = dict(
    data_preprocessor=dict(batch_augments=None),
    backbone=dict(img_size=image_size, window_size=5, drop_path_rate=0.0, init_cfg=None),
    neck=dict(out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(type='Shared2FCBBoxHead', in_channels=channels, fc_out_channels=256,
                       num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(num_convs=2, in_channels=channels, conv_out_channels=channels, num_classes=len(classes))),
    train_cfg=dict(rpn=dict(sampler=dict(num=128)), rpn_proposal=dict(nms_pre=500, max_per_img=200),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=200)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=1,
    dataset=dict(times=1, dataset=dict(data_root=data_root, metainfo=dict(classes=classes), pipeline=train_pipeline)))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 8
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05), paramwise_cfg=dict(layer_decay_rate=1.0),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=30),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[7], gamma=0.1),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
randomness = dict(seed=0)
