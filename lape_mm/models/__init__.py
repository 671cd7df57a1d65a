from . import necks  # noqa: F401  (registers necks)
from .backbones import LaPEViT
from .classifiers import LaPEVisionTransformer

__all__ = ['LaPEViT', 'LaPEVisionTransformer']
