from .checkpoint_fit import FitReport, fit_state_dict, load_fitted, load_pretrained
from .lape_vit import ARCH_ZOO, PE_JOINS, LaPEViT
from .lape_vit_adapter import LaPEViTAdapter

__all__ = ['ARCH_ZOO', 'PE_JOINS', 'FitReport', 'LaPEViT', 'LaPEViTAdapter', 'fit_state_dict', 'load_fitted',
           'load_pretrained']
