from . import necks  # noqa: F401  (registers necks)
from .backbones import LaPEViT, LaPEViTAdapter
from .classifiers import LaPEVisionTransformer

__all__ = ['LaPEViT', 'LaPEViTAdapter', 'LaPEVisionTransformer']
