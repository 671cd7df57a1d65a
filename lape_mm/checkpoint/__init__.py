from .convert import StateDict, detect_format, to_lape_state_dict
from .read import read_checkpoint
from .safe_load import CheckpointError, local_path, register_safe_globals, safe_load, use_safe_local_loader

__all__ = ['CheckpointError', 'StateDict', 'detect_format', 'local_path', 'read_checkpoint', 'register_safe_globals',
           'safe_load', 'to_lape_state_dict', 'use_safe_local_loader']
