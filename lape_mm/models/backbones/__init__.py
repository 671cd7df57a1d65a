from .lape_vit import ARCH_ZOO, PE_JOINS, LaPEViT
from .lape_vit_adapter import LaPEViTAdapter

__all__ = ['ARCH_ZOO', 'LaPEViT', 'LaPEViTAdapter', 'PE_JOINS']
