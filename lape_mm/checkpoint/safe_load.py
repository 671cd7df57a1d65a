"""Weights-only checkpoint loading: ``torch.load(weights_only=True)`` or, for a ``.safetensors`` file
(timm's and Hugging Face's format: tensors and string metadata, no code), the ``safetensors`` package.

torch>=2.6 loads weights-only by default, which refuses mmengine's training checkpoints (numpy arrays in
``message_hub``, and DeiT ``main.py``'s ``args`` Namespace): :func:`register_safe_globals` allowlists exactly
those classes, which only lets more files load. An unreadable file is one :class:`CheckpointError` naming
the file and the problem."""
import argparse
import os
import os.path as osp
import pickle
import re
import zipfile
from os import PathLike
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
import safetensors
import torch

from ..errors import CheckpointError

ZIP_MAGIC = b'PK\x03\x04'  # torch.save's default (zip) format
PICKLE_PROTO = b'\x80'  # legacy torch.save files are pickles (protocol >= 2)


def mmengine_safe_globals() -> list:
    """What mmengine/mmseg/mmdet training checkpoints pickle besides tensors, and DeiT ``main.py``'s
    ``args`` Namespace."""
    numeric_codes = np.typecodes['AllInteger'] + np.typecodes['AllFloat'] + '?'
    numpy_dtypes = sorted({type(np.dtype(code)) for code in numeric_codes}, key=str)
    # The functions numpy pickles an array and a scalar with (numpy.core.multiarray._reconstruct, .scalar).
    rebuild_array, rebuild_scalar = np.ndarray(0).__reduce__()[0], np.float64(0).__reduce__()[0]
    return [np.ndarray, np.dtype, *numpy_dtypes, rebuild_array, rebuild_scalar, argparse.Namespace]


def register_safe_globals() -> None:
    """Allowlist :func:`mmengine_safe_globals` for ``torch.load(weights_only=True)`` process-wide."""
    torch.serialization.add_safe_globals(mmengine_safe_globals())


def diagnose_file(path: str | PathLike) -> str | None:
    """What is visibly wrong with a torch checkpoint file from its size and first bytes, or None (also for
    a file of another format: :func:`safe_load` lets ``safetensors`` judge those)."""
    size = os.path.getsize(path)
    if size == 0:
        return 'the file is empty (0 bytes), e.g. from an interrupted save, copy or download'
    with open(path, 'rb') as f:
        head = f.read(4)
    if head.startswith(ZIP_MAGIC) and not zipfile.is_zipfile(path):
        return (f'the file is truncated ({size} bytes): it starts as a torch.save archive but its end is missing, '
                f'e.g. from an interrupted save, copy or download')
    return None


def is_torch_file(path: str | PathLike) -> bool:
    with open(path, 'rb') as f:
        return f.read(4).startswith((ZIP_MAGIC, PICKLE_PROTO))


def refused(source: str | PathLike, err: pickle.UnpicklingError) -> CheckpointError:
    """The error for a file that weights-only loading refused, naming the refused global (never torch's
    advice to unpickle it anyway)."""
    match = re.search(r'GLOBAL (\S+) was not an allowed global', str(err))
    reason = f'it pickles {match.group(1)}' if match else 'it pickles objects other than weights'
    return CheckpointError(
        f'refused to load {source}: it contains pickled objects that are not plain weights ({reason}). lape_mm '
        f'never unpickles arbitrary objects, since that can run code. If the file is yours, re-save only its '
        f'tensors: torch.save(model.state_dict(), PATH).')


def _corrupt(source: str, err: Exception) -> CheckpointError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CheckpointError(f'cannot load checkpoint {source}: it is corrupt or not a checkpoint ({reason}). '
                           f'Re-create or re-download it.')


def load_safetensors(path: str | PathLike, source: str) -> dict:
    """A safetensors file as an mmengine checkpoint: ``{'state_dict': tensors (CPU), 'meta': its metadata}``."""
    try:
        with safetensors.safe_open(path, framework='pt', device='cpu') as f:
            return {'state_dict': {key: f.get_tensor(key) for key in f.keys()}, 'meta': dict(f.metadata() or {})}
    except (safetensors.SafetensorError, ValueError, OSError) as err:
        raise _corrupt(source, err) from None


def safe_load(path: str | PathLike, map_location='cpu', source: str | None = None) -> dict:
    """A torch checkpoint (known by its first bytes, whatever its name) loaded weights-only, else a
    safetensors file; an unreadable or refused file is a :class:`CheckpointError` naming ``source``."""
    source = source or str(path)
    if problem := diagnose_file(path):
        raise CheckpointError(f'cannot load checkpoint {source}: {problem}. Re-create or re-download it.')
    if not is_torch_file(path):
        return load_safetensors(path, source)
    # Again on every load: leaving a torch.serialization.safe_globals([...]) block (timm's loaders use
    # one for argparse.Namespace) removes those globals from the process-wide allowlist.
    register_safe_globals()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise refused(source, err) from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise _corrupt(source, err) from None


def local_path(name: str) -> str:
    """A ``file://`` URL as the local path it names (other names unchanged), ``~`` expanded."""
    if name.startswith('file://'):
        parts = urlsplit(name)
        if parts.netloc not in ('', 'localhost'):
            raise CheckpointError(f'{name} names a file on host {parts.netloc!r}: only local file:// URLs '
                                  f'(file:///absolute/path) can be read')
        name = url2pathname(parts.path)
    return osp.expanduser(name)


def load_from_local(filename: str, map_location=None) -> dict:
    """A local path or ``file://`` URL through :func:`safe_load`; a missing file is named."""
    path = local_path(filename)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    return safe_load(path, map_location=map_location)
