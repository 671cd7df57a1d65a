from .convert import (StateDict, convert_mmpretrain_vit, convert_mmseg_vit, convert_timm, convert_vit_adapter,
                      detect_format, saved_patch_grid, to_authors, to_lape_state_dict, unwrap)
from .read import read_checkpoint
from .safe_load import CheckpointError, register_safe_globals, safe_load

__all__ = ['CheckpointError', 'StateDict', 'convert_mmpretrain_vit', 'convert_mmseg_vit', 'convert_timm',
           'convert_vit_adapter', 'detect_format', 'read_checkpoint', 'register_safe_globals', 'safe_load',
           'saved_patch_grid', 'to_authors', 'to_lape_state_dict', 'unwrap']
