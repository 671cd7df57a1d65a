from .checkpoint_fit import FitReport, fit_state_dict, load_fitted, load_pretrained
from .lape_vit import ARCH_ZOO, PE_JOINS, LaPEViT

__all__ = ['ARCH_ZOO', 'PE_JOINS', 'FitReport', 'LaPEViT', 'fit_state_dict', 'load_fitted', 'load_pretrained']
