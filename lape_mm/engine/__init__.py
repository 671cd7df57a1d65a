from .atomic_backend import AtomicLocalBackend, use_atomic_local_backend
from .layer_decay import LayerDecayOptimWrapperConstructor, vit_layer_id
from .optim_wrapper import AutocastOptimWrapper
from .rng_state_hook import RNGStateHook

__all__ = ['AtomicLocalBackend', 'AutocastOptimWrapper', 'LayerDecayOptimWrapperConstructor', 'RNGStateHook',
           'use_atomic_local_backend', 'vit_layer_id']
