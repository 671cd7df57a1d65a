"""Weights-only checkpoint loading with an explicit allowlist of the globals mmengine writes.

torch>=2.6 loads with ``weights_only=True``, which rejects mmengine's training checkpoints (their
``message_hub`` holds ``HistoryBuffer`` objects and numpy arrays), so stock ``--resume`` and
``tools/test.py`` fail. Instead of falling back to full unpickling, we allowlist exactly the
classes those checkpoints contain; anything else is still refused.

One more obstacle: ``HistoryBuffer.__getstate__`` pickles its class-wide table of statistics
methods, which pickle writes as ``getattr(HistoryBuffer, 'mean')``; allowlisting ``getattr``
would open the door to any attribute of any allowed class. We pickle the buffer without that
table instead (it is class-level and rebuilt on load), so checkpoints written with lape_mm
imported load weights-only.
"""
from __future__ import annotations

import argparse
import pickle
from os import PathLike

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


def mmengine_safe_globals() -> list:
    """Classes and functions that mmengine/mmseg/mmdet training checkpoints legitimately pickle."""
    numeric_codes = np.typecodes['AllInteger'] + np.typecodes['AllFloat'] + '?'
    numpy_dtypes = sorted({type(np.dtype(code)) for code in numeric_codes}, key=str)
    # argparse.Namespace: the ``args`` of the LaPE authors' (DeiT) main.py checkpoints, plain values.
    return [argparse.Namespace, HistoryBuffer, np.ndarray, np.dtype, *numpy_dtypes, np.core.multiarray._reconstruct,
            np.core.multiarray.scalar]


def _history_buffer_getstate(self) -> dict:
    return {k: v for k, v in self.__dict__.items() if k != 'statistics_methods'}


def _history_buffer_setstate(self, state: dict) -> None:
    state.pop('statistics_methods', None)  # written by stock mmengine; the class has them already
    self.__dict__.update(state)
    self._set_default_statistics()


def register_safe_globals() -> None:
    """Allowlist :func:`mmengine_safe_globals` for every ``torch.load`` in this process, and
    make ``HistoryBuffer`` pickle without ``getattr`` (see the module docstring)."""
    torch.serialization.add_safe_globals(mmengine_safe_globals())
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    HistoryBuffer.__setstate__ = _history_buffer_setstate


def safe_load(path: str | PathLike, map_location='cpu') -> dict:
    """``torch.load`` with ``weights_only=True``; a file with other pickled objects is refused."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f'refused to load {path}: it contains pickled objects that are not plain weights '
            f'({reason}). lape_mm never unpickles arbitrary objects, since that can run code. If the '
            f'file is yours (e.g. written by mmengine without lape_mm imported), re-save only its '
            f'tensors: torch.save(model.state_dict(), PATH).') from None
