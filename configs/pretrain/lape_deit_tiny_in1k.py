# LaPE-DeiT-Ti/16 on ImageNet-1K, 224x224, 4 GPUs x 256: the DeiT recipe the LaPE paper trains with.
# mmpretrain's DeiT-Ti config (data pipeline with RandAugment m9/mstd0.5 and random erasing 0.25,
# Mixup 0.8 / CutMix 1.0, label smoothing 0.1, AdamW lr 5e-4 * 1024 / 512, wd 0.05 without decay on
# norms, biases, cls token and PE, 300 epochs, top-1/top-5) with the backbone replaced by LaPEViT and
# three departures from mmpretrain restored to DeiT's own recipe: 5 warm-up epochs (not 20),
# repeated augmentation (3 repeats) and no gradient clipping; stochastic depth 0.1, DeiT's default
# for every size.
_base_ = ['mmpretrain::deit/deit-tiny_4xb256_in1k.py', '../_base_/lape_runtime.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='LaPEViT',
        arch='tiny',
        img_size=224,
        patch_size=16,
        pe_join='lape',
        pe_type='learnable',
        out_indices=-1,
        output_cls_token=True,  # VisionTransformerClsHead reads the cls token of [patch_map, cls_token]
        drop_path_rate=0.1,
        final_norm=True,
        norm_cfg=dict(type='LN', eps=1e-6)))

train_dataloader = dict(sampler=dict(type='RepeatAugSampler', num_repeats=3))
optim_wrapper = dict(clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5),
]
# The last three epochs' checkpoints, not all 300.
default_hooks = dict(checkpoint=dict(type='PruneAfterSaveCheckpointHook', backend_args=dict(backend='atomic_local'),
                                     max_keep_ckpts=3))
randomness = dict(seed=0)
