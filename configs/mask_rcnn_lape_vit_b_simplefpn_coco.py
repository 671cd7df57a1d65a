# Mask R-CNN + LaPEViT-B/16 + SimpleFPN on COCO, 1024x1024 large-scale jitter, 100 epochs: ViTDet's
# recipe (Li et al. 2022; mmdet's projects/ViTDet) on mmdet's own pieces: the Mask R-CNN model,
# the LSJ 100-epoch data/schedule (25 epochs of a 4x RepeatDataset, lr x0.1 at epochs 88 and 96),
# and ViTDet's heads (2-conv RPN, 4conv1fc box head and mask head with LayerNorm).
# Differences from ViTDet, and why:
# - Position: LaPE's per-layer PE join and no relative position bias (use_rel_pos), which is
#   what this project measures; the _add twin is the abs-PE baseline with the same recipe.
# - Weights: ImageNet-1k LaPE-DeiT-B instead of MAE (LaPE's pretraining); any DeiT/timm/mmpretrain
#   ViT-B checkpoint loads too (pe_norm starts as identity).
# - Batch: mmdet's LSJ layout, 2 images/GPU; ViTDet's lr 1e-4 is for 64 images (32 GPUs x 2).
#   On fewer GPUs add `--cfg-options auto_scale_lr.enable=True` to scale lr linearly.
# - Warm-up is ViTDet's (250 iterations from 0.001x); train with `--amp` as ViTDet does (fp16).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
    './_base_/lape_runtime.py',
]

image_size = (1024, 1024)
pretrained = 'pretrain/lape_deit_base_in1k.pth'
norm_cfg = dict(type='mmpretrain.LN2d', eps=1e-6)  # LayerNorm over channels, as ViTDet's neck and heads
model = dict(
    # Training images are padded to 1024x1024 (normalized 0 = the mean colour), so the PE grid is
    # always 64x64; test images get the same square padding in test_pipeline.
    data_preprocessor=dict(
        pad_size_divisor=32,
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='LaPEViT',
        arch='base',
        img_size=image_size,
        patch_size=16,
        pe_join='lape',
        pe_type='learnable',
        with_cls_token=False,
        window_size=14,
        global_attn_indexes=(2, 5, 8, 11),
        out_indices=-1,
        drop_path_rate=0.1,
        final_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(_delete_=True, type='SimpleFPN', in_channels=768, out_channels=256, num_outs=5,
              norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

# ViTDet tests at the training scale: longest side 1024, padded to 1024x1024 with the mean (BGR).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(104, 116, 124))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.7))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[22, 24], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(type='PruneAfterSaveCheckpointHook', backend_args=dict(backend='atomic_local')))
