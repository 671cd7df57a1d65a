from .timm_lape import LaPEVisionTransformer

__all__ = ['LaPEVisionTransformer']
