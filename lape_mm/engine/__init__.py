from .atomic_backend import AtomicLocalBackend
from .checkpoint_hook import PruneAfterSaveCheckpointHook
from .cpu_amp_ops import MMCVOpsCPUAutocastHook
from .data_check_hook import DataCheckHook
from .fsdp_strategy import FSDP2Strategy
from .layer_decay import NO_WEIGHT_DECAY, LayerDecayOptimWrapperConstructor, vit_layer_id
from .message_hub_hook import MessageHubStateHook
from .optim_wrapper import AutocastOptimWrapper
from .rng_state_hook import RNGStateHook
from .strict_checkpoint import StrictCheckpointHook, check_checkpoint_fits
from .sync_buffers import SyncBuffersEveryIterHook
from .work_dir_lock import WorkDirLockHook

__all__ = ['NO_WEIGHT_DECAY', 'AtomicLocalBackend', 'AutocastOptimWrapper', 'DataCheckHook', 'FSDP2Strategy',
           'LayerDecayOptimWrapperConstructor', 'MMCVOpsCPUAutocastHook', 'MessageHubStateHook',
           'PruneAfterSaveCheckpointHook', 'RNGStateHook', 'StrictCheckpointHook', 'SyncBuffersEveryIterHook',
           'WorkDirLockHook', 'check_checkpoint_fits', 'vit_layer_id']
