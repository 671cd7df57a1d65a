from .atomic_backend import AtomicLocalBackend, use_atomic_local_backend
from .checkpoint_hook import PruneAfterSaveCheckpointHook
from .cpu_amp_ops import patch_mmcv_cpu_amp_ops
from .data_check_hook import DataCheckHook
from .fsdp_strategy import FSDP2Strategy
from .layer_decay import NO_WEIGHT_DECAY, LayerDecayOptimWrapperConstructor, vit_layer_id
from .optim_wrapper import AutocastOptimWrapper
from .rng_state_hook import RNGStateHook
from .strict_checkpoint import StrictCheckpointHook, check_checkpoint_fits

__all__ = ['NO_WEIGHT_DECAY', 'AtomicLocalBackend', 'AutocastOptimWrapper', 'DataCheckHook', 'FSDP2Strategy',
           'LayerDecayOptimWrapperConstructor', 'PruneAfterSaveCheckpointHook', 'RNGStateHook', 'StrictCheckpointHook',
           'check_checkpoint_fits', 'patch_mmcv_cpu_amp_ops', 'use_atomic_local_backend', 'vit_layer_id']
