from .checkpoint_fit import fit_state_dict, load_fitted, load_pretrained, pretrained_checkpoint
from .lape_vit import ARCH_ZOO, PE_JOINS, LaPEViT
from .lape_vit_adapter import LaPEViTAdapter

__all__ = ['ARCH_ZOO', 'PE_JOINS', 'LaPEViT', 'LaPEViTAdapter', 'fit_state_dict', 'load_fitted', 'load_pretrained',
           'pretrained_checkpoint']
