"""Weights-only checkpoint loading, with an allowlist of exactly the globals mmengine checkpoints hold.

torch>=2.6 loads ``weights_only=True``, which refuses mmengine's training checkpoints (``HistoryBuffer`` and
numpy arrays in ``message_hub``): we allowlist those classes rather than unpickle anything. The buffer pickles
its statistics table as ``getattr(HistoryBuffer, 'mean')``, and allowing ``getattr`` would allow any
attribute, so it is pickled without that table (rebuilt on load). A ``.safetensors`` file (timm's and
Hugging Face's format: tensors and string metadata, no code) is read by the ``safetensors`` package. An
unreadable file is one :class:`CheckpointError` naming the file and the problem."""
import argparse
import json
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
from mmengine.logging import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

ZIP_MAGIC = b'PK\x03\x04'  # torch.save's default (zip) format
PICKLE_PROTO = b'\x80'  # legacy torch.save files are pickles (protocol >= 2)
SAFETENSORS_MAX_HEADER = 100_000_000  # the format's limit on its JSON header


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


def mmengine_safe_globals() -> list:
    """What mmengine/mmseg/mmdet training checkpoints pickle, and DeiT ``main.py``'s ``args`` Namespace."""
    numeric_codes = np.typecodes['AllInteger'] + np.typecodes['AllFloat'] + '?'
    numpy_dtypes = sorted({type(np.dtype(code)) for code in numeric_codes}, key=str)
    # The functions numpy pickles an array and a scalar with (numpy.core.multiarray._reconstruct, .scalar).
    rebuild_array, rebuild_scalar = np.ndarray(0).__reduce__()[0], np.float64(0).__reduce__()[0]
    return [HistoryBuffer, np.ndarray, np.dtype, *numpy_dtypes, rebuild_array, rebuild_scalar, argparse.Namespace]


def _history_buffer_getstate(self) -> dict:
    return {k: v for k, v in self.__dict__.items() if k != 'statistics_methods'}


def _history_buffer_setstate(self, state: dict) -> None:
    state.pop('statistics_methods', None)  # written by stock mmengine; the class has them already
    self.__dict__.update(state)
    self._set_default_statistics()


def register_safe_globals() -> None:
    """Allowlist :func:`mmengine_safe_globals` process-wide; pickle ``HistoryBuffer`` without ``getattr``."""
    torch.serialization.add_safe_globals(mmengine_safe_globals())
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    HistoryBuffer.__setstate__ = _history_buffer_setstate


def safetensors_header_size(head: bytes) -> int | None:
    """The JSON header size N of a file starting with ``head`` if it is a safetensors file (8 bytes
    little-endian N, then the header, which opens with ``{``), else None."""
    size = int.from_bytes(head[:8], 'little')
    return size if head[8:9] == b'{' and size <= SAFETENSORS_MAX_HEADER else None


def _truncated(size: int, kind: str) -> str:
    return (f'the file is truncated ({size} bytes): it starts as a {kind} but its end is missing, e.g. from '
            f'an interrupted save, copy or download')


def _safetensors_truncated(path: str | PathLike, header_size: int, size: int) -> bool:
    """Whether the tensor data the header lists runs past the end of the file (or the header does)."""
    if 8 + header_size > size:
        return True
    with open(path, 'rb') as f:
        f.seek(8)
        try:
            header = json.loads(f.read(header_size))
            end = max((entry['data_offsets'][1] for name, entry in header.items() if name != '__metadata__'),
                      default=0)
        except (ValueError, TypeError, KeyError, IndexError):  # malformed: safetensors names it on load
            return False
    return 8 + header_size + end > size


def diagnose_file(path: str | PathLike) -> str | None:
    """What is visibly wrong with a checkpoint file from its size and first bytes, or None."""
    size = os.path.getsize(path)
    if size == 0:
        return 'the file is empty (0 bytes), e.g. from an interrupted save, copy or download'
    with open(path, 'rb') as f:
        head = f.read(9)
    if (header_size := safetensors_header_size(head)) is not None:
        return _truncated(size, 'safetensors file') if _safetensors_truncated(path, header_size, size) else None
    if head.startswith(ZIP_MAGIC) and not zipfile.is_zipfile(path):
        return _truncated(size, 'torch.save archive')
    if not head.startswith((ZIP_MAGIC, PICKLE_PROTO)):
        return 'the file is not a PyTorch checkpoint (neither a torch.save archive, a pickle nor a safetensors file)'
    return None


def is_safetensors(path: str | PathLike) -> bool:
    with open(path, 'rb') as f:
        return safetensors_header_size(f.read(9)) is not None


def refused(source: str | PathLike, err: pickle.UnpicklingError) -> CheckpointError:
    """The error for a file that weights-only loading refused, naming the refused global (without
    torch's advice to unpickle it anyway)."""
    match = re.search(r'GLOBAL (\S+) was not an allowed global', str(err))
    detail = str(err).rsplit('WeightsUnpickler error:', 1)[-1].strip().splitlines()
    reason = f'it pickles {match.group(1)}' if match else (detail[0] if detail else 'it pickles other objects')
    return CheckpointError(
        f'refused to load {source}: it contains pickled objects that are not plain weights ({reason}). lape_mm '
        f'never unpickles arbitrary objects, since that can run code. If the file is yours (e.g. written by '
        f'mmengine without lape_mm imported), re-save only its tensors: torch.save(model.state_dict(), PATH).')


def _corrupt(source: str, err: Exception) -> CheckpointError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CheckpointError(f'cannot load checkpoint {source}: it is corrupt ({reason}). Re-create or re-download it.')


def load_safetensors(path: str | PathLike, source: str) -> dict:
    """A safetensors file as an mmengine checkpoint: ``{'state_dict': tensors (CPU), 'meta': its metadata}``."""
    try:
        with safetensors.safe_open(path, framework='pt', device='cpu') as f:
            return {'state_dict': {key: f.get_tensor(key) for key in f.keys()}, 'meta': dict(f.metadata() or {})}
    except (safetensors.SafetensorError, ValueError, OSError) as err:
        raise _corrupt(source, err) from None


def safe_load(path: str | PathLike, map_location='cpu', source: str | None = None) -> dict:
    """``torch.load(weights_only=True)``, or :func:`load_safetensors` for a safetensors file (known by its
    first bytes); an unreadable or refused file is a :class:`CheckpointError` naming ``source`` (default: path)."""
    source = source or str(path)
    if problem := diagnose_file(path):
        raise CheckpointError(f'cannot load checkpoint {source}: {problem}. Re-create or re-download it.')
    if is_safetensors(path):
        return load_safetensors(path, source)
    # Again on every load: leaving a torch.serialization.safe_globals([...]) block (timm's loaders use
    # one for argparse.Namespace) removes those globals from the process-wide allowlist.
    torch.serialization.add_safe_globals(mmengine_safe_globals())
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
    """mmengine's loader for local paths and ``file://`` URLs, through :func:`safe_load`."""
    path = local_path(filename)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {filename!r} does not exist')
    return safe_load(path, map_location=map_location)


def use_safe_local_loader() -> None:
    """Route mmengine's local checkpoint reads (``load_from``, ``--resume``, inferencers, ``init_cfg``),
    ``file://`` URLs included, through :func:`safe_load`, and its downloads through
    :func:`~lape_mm.checkpoint.download.load_url_weights_only`."""
    from .download import load_url_weights_only  # (download.py reads through this module)
    CheckpointLoader.register_scheme(prefixes=('', 'file://'), loader=load_from_local, force=True)
    mmengine_checkpoint.load_url = load_url_weights_only
