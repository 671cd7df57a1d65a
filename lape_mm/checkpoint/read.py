"""Read a checkpoint file of any supported format, from any place mmengine reads, into native keys."""
import pickle

from mmengine.runner import CheckpointLoader

from .convert import StateDict, saved_patch_grid, to_lape_state_dict
from .download import load_url_weights_only
from .safe_load import load_from_local, refused, register_safe_globals

URL_PREFIXES = ('http://', 'https://')


def load_weights_only(path: str, map_location='cpu') -> dict:
    """A checkpoint loaded weights-only from a local path, ``file://``, ``http(s)://`` (cached beside
    torch.hub's cache) or anything else mmengine's ``CheckpointLoader`` reads (``s3://``, ``torchvision://``...),
    those through mmengine's own loaders with torch's weights-only default and :func:`register_safe_globals`."""
    if path.startswith(URL_PREFIXES):
        return load_url_weights_only(path, map_location=map_location)
    if '://' not in path or path.startswith('file://'):
        return load_from_local(path, map_location)
    register_safe_globals()
    try:
        return CheckpointLoader.load_checkpoint(path, map_location=map_location, logger='current')
    except pickle.UnpicklingError as err:
        raise refused(path, err) from None


def read_checkpoint(path: str, prefix: str | None = None) -> tuple[StateDict, str, tuple[int, int] | None]:
    """The file's weights in native keys, its format, and the PE grid saved with it (if any)."""
    checkpoint = load_weights_only(path)
    state_dict, fmt = to_lape_state_dict(checkpoint, prefix)
    return state_dict, fmt, saved_patch_grid(checkpoint)


def use_weights_only_loaders() -> None:
    """Route mmengine's reads of local paths, ``file://`` and ``http(s)://`` URLs (``load_from``, ``--resume``,
    inferencers) in this process through :func:`load_weights_only`, so that they read ``.safetensors`` too,
    never unpickle code and name what is wrong with a file. For lape_mm's own tools, which own their
    process; ``import lape_mm`` leaves mmengine's loaders as they are."""
    CheckpointLoader.register_scheme(prefixes=('', 'file://'), loader=load_from_local, force=True)
    CheckpointLoader.register_scheme(prefixes=URL_PREFIXES, loader=load_url_weights_only, force=True)
