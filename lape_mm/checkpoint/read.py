"""Read a checkpoint file of any supported format, from any place mmengine reads, into native keys."""
import pickle

from mmengine.runner import CheckpointLoader

from .convert import StateDict, saved_patch_grid, to_lape_state_dict
from .safe_load import refused, register_safe_globals


def read_checkpoint(path: str, prefix: str | None = None) -> tuple[StateDict, str, tuple[int, int] | None]:
    """The file's weights in native keys, its format, and the PE grid saved with it (if any). ``path`` is
    anything mmengine's ``CheckpointLoader`` reads (a file, ``https://``, ``s3://``...), always weights-only."""
    register_safe_globals()  # remote loaders use torch.load's default weights_only=True with this allowlist
    try:
        checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu', logger='current')
    except pickle.UnpicklingError as err:
        raise refused(path, err) from None
    state_dict, fmt = to_lape_state_dict(checkpoint, prefix)
    return state_dict, fmt, saved_patch_grid(checkpoint)
