"""lape_mm: LaPE vision transformers for OpenMMLab (mmseg / mmdet 3.x).

``custom_imports = dict(imports=['lape_mm'])`` in a config registers lape_mm's models, hooks, optimizer
wrappers, strategy and the ``atomic_local`` file backend, and changes nothing else in the process but one
thing: torch's weights-only allowlist gains the numpy types mmengine checkpoints hold (and argparse's
Namespace), which only lets more files load. What changes behaviour is asked for in a config
(``configs/_base_/lape_runtime.py``; docs/architecture.md lists each switch)."""
from .checkpoint import register_safe_globals
from . import engine  # noqa: F401  (registers hooks, optimizer wrappers, the strategy and the backend)
from .errors import LaPEError
from .models import LaPEViT, LaPEViTAdapter, LaPEVisionTransformer

register_safe_globals()

__version__ = '0.1.0'
__all__ = ['LaPEError', 'LaPEViT', 'LaPEViTAdapter', 'LaPEVisionTransformer', '__version__']
