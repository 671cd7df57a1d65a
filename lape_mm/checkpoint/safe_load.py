"""Weights-only checkpoint loading, with an allowlist of exactly the globals mmengine checkpoints hold.

torch>=2.6 loads ``weights_only=True``, which refuses mmengine's training checkpoints (``HistoryBuffer`` and
numpy arrays in ``message_hub``): we allowlist those classes rather than unpickle anything. The buffer pickles
its statistics table as ``getattr(HistoryBuffer, 'mean')``, and allowing ``getattr`` would allow any
attribute, so it is pickled without that table (rebuilt on load). An unreadable file is one
:class:`CheckpointError` naming the file and the problem."""
import argparse
import os
import os.path as osp
import pickle
import re
import zipfile
from os import PathLike

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

ZIP_MAGIC = b'PK\x03\x04'  # torch.save's default (zip) format
PICKLE_PROTO = b'\x80'  # legacy torch.save files are pickles (protocol >= 2)


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


def diagnose_file(path: str | PathLike) -> str | None:
    """What is visibly wrong with a checkpoint file from its size and first bytes, or None."""
    size = os.path.getsize(path)
    if size == 0:
        return 'the file is empty (0 bytes), e.g. from an interrupted save, copy or download'
    with open(path, 'rb') as f:
        head = f.read(len(ZIP_MAGIC))
    if head == ZIP_MAGIC and not zipfile.is_zipfile(path):
        return (f'the file is truncated ({size} bytes): it starts as a torch.save archive but its end is '
                f'missing, e.g. from an interrupted save, copy or download')
    if head != ZIP_MAGIC and not head.startswith(PICKLE_PROTO):
        return 'the file is not a PyTorch checkpoint (neither a torch.save archive nor a pickle)'
    return None


def refused(path: str | PathLike, err: pickle.UnpicklingError) -> CheckpointError:
    """The error for a file that weights-only loading refused, naming the refused global (without
    torch's advice to unpickle it anyway)."""
    match = re.search(r'GLOBAL (\S+) was not an allowed global', str(err))
    detail = str(err).rsplit('WeightsUnpickler error:', 1)[-1].strip().splitlines()
    reason = f'it pickles {match.group(1)}' if match else (detail[0] if detail else 'it pickles other objects')
    return CheckpointError(
        f'refused to load {path}: it contains pickled objects that are not plain weights ({reason}). lape_mm '
        f'never unpickles arbitrary objects, since that can run code. If the file is yours (e.g. written by '
        f'mmengine without lape_mm imported), re-save only its tensors: torch.save(model.state_dict(), PATH).')


def safe_load(path: str | PathLike, map_location='cpu') -> dict:
    """``torch.load(weights_only=True)``; an unreadable or refused file is a :class:`CheckpointError`."""
    if problem := diagnose_file(path):
        raise CheckpointError(f'cannot load checkpoint {path}: {problem}. Re-create or re-download it.')
    # Again on every load: leaving a torch.serialization.safe_globals([...]) block (timm's loaders use
    # one for argparse.Namespace) removes those globals from the process-wide allowlist.
    torch.serialization.add_safe_globals(mmengine_safe_globals())
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise refused(path, err) from None
    except (RuntimeError, EOFError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f'cannot load checkpoint {path}: it is corrupt ({reason}). '
                              f'Re-create or re-download it.') from None


def load_from_local(filename: str, map_location=None) -> dict:
    """mmengine's loader for local paths, through :func:`safe_load`."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename!r} does not exist')
    return safe_load(filename, map_location=map_location)


def load_url_weights_only(url: str, **kwargs) -> dict:
    """mmengine's ``load_url`` (``https://``, ``open-mmlab://``...) weights-only: torch.hub's default unpickles."""
    torch.serialization.add_safe_globals(mmengine_safe_globals())
    return torch.hub.load_state_dict_from_url(url, **kwargs, weights_only=True)


def use_safe_local_loader() -> None:
    """Route mmengine's local checkpoint reads (``load_from``, ``--resume``, inferencers, ``init_cfg``)
    through :func:`safe_load`, and its downloads through :func:`load_url_weights_only`."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    mmengine_checkpoint.load_url = load_url_weights_only
