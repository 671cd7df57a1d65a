from .atomic_backend import AtomicLocalBackend, use_atomic_local_backend
from .checkpoint_fit import StrictCheckpointHook, check_checkpoint_fits
from .checkpoint_hook import PruneAfterSaveCheckpointHook
from .cpu_amp_ops import patch_mmcv_cpu_amp_ops
from .layer_decay import LayerDecayOptimWrapperConstructor, vit_layer_id
from .optim_wrapper import AutocastOptimWrapper
from .rng_state_hook import RNGStateHook
from .work_dir import WorkDirBusyError

__all__ = ['AtomicLocalBackend', 'AutocastOptimWrapper', 'LayerDecayOptimWrapperConstructor',
           'PruneAfterSaveCheckpointHook', 'RNGStateHook', 'StrictCheckpointHook', 'WorkDirBusyError',
           'check_checkpoint_fits', 'patch_mmcv_cpu_amp_ops', 'use_atomic_local_backend', 'vit_layer_id']
