"""lape_mm: LaPE vision transformers for OpenMMLab (mmseg / mmdet 3.x).

``custom_imports = dict(imports=['lape_mm'])`` in a config registers everything below."""
from .checkpoint import register_safe_globals, use_safe_local_loader
from .engine import patch_mmcv_cpu_amp_ops, use_atomic_local_backend  # (and registers the hooks and wrappers)
from .models import LaPEViT, LaPEViTAdapter, LaPEVisionTransformer

register_safe_globals()
use_safe_local_loader()
use_atomic_local_backend()
patch_mmcv_cpu_amp_ops()

__version__ = '0.1.0'
__all__ = ['LaPEViT', 'LaPEViTAdapter', 'LaPEVisionTransformer', '__version__']
