# What every lape_mm config runs with, whatever starts it: lape_mm's tools/train.py and tools/test.py,
# mmseg's and mmdet's own tools, `mim train`. `import lape_mm` only registers these hooks; listing
# them here is what turns them on. A config of yours gets the same by adding this file to its _base_
# and the checkpoint hook below to its default_hooks (docs/architecture.md, "Config switches").
custom_imports = dict(imports=['lape_mm'], allow_failed_imports=False)
custom_hooks = [
    dict(type='WorkDirLockHook'),  # one live training run per work dir; clears half-written files
    dict(type='DataCheckHook', sample=500),  # data checked before the run; sample=None decodes every file
    dict(type='StrictCheckpointHook'),  # load_from / resume / test checkpoints must fit the model exactly
    dict(type='RNGStateHook'),  # resume continues bit-identically
    dict(type='MessageHubStateHook'),  # checkpoints load with torch.load(weights_only=True)
    dict(type='MMCVOpsCPUAutocastHook'),  # mmcv's NMS / RoIAlign under bf16 autocast on CPUs (--amp)
]
# Atomic checkpoint writes, and old checkpoints deleted only once the new one is complete, need the
# line below in the config's default_hooks; it cannot be here, as a sibling _base_ file may not define
# default_hooks (mmengine refuses keys repeated among bases, and upstream schedules define it):
#   default_hooks = dict(checkpoint=dict(type='PruneAfterSaveCheckpointHook', backend_args=dict(backend='atomic_local')))
