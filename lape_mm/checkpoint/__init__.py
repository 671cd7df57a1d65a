from .convert import StateDict, detect_format, to_lape_state_dict
from .read import load_weights_only, read_checkpoint, use_weights_only_loaders
from .safe_load import local_path, register_safe_globals, safe_load
from ..errors import CheckpointError

__all__ = ['CheckpointError', 'StateDict', 'detect_format', 'load_weights_only', 'local_path', 'read_checkpoint',
           'register_safe_globals', 'safe_load', 'to_lape_state_dict', 'use_weights_only_loaders']
