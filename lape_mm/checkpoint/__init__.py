from .convert import (convert_mmpretrain_vit, convert_mmseg_vit, convert_timm, convert_vit_adapter,
                      detect_format, to_lape_state_dict, unwrap)
from .load import adapt_state_dict, load_into, load_pretrained
from .safe_load import CheckpointError, register_safe_globals, safe_load

__all__ = ['CheckpointError', 'adapt_state_dict', 'convert_mmpretrain_vit', 'convert_mmseg_vit',
           'convert_timm', 'convert_vit_adapter', 'detect_format', 'load_into', 'load_pretrained',
           'register_safe_globals', 'safe_load', 'to_lape_state_dict', 'unwrap']
