from .lape_vit import ARCH_ZOO, PE_JOINS, LaPEViT

__all__ = ['ARCH_ZOO', 'PE_JOINS', 'LaPEViT']
