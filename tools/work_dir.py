"""Resuming from the newest complete checkpoint in a work dir.

A run killed while saving leaves a ``.tmp-*`` file (:mod:`lape_mm.fileio`), and a ``last_checkpoint`` can be
empty or name a file that was deleted: resume looks past both. (The work dir's lock is
:class:`lape_mm.engine.WorkDirLockHook`, declared in ``configs/_base_/lape_runtime.py``.)
"""
from __future__ import annotations

import os.path as osp
import re
from pathlib import Path

from lape_mm.checkpoint.safe_load import diagnose_file

CHECKPOINT_NAME = re.compile(r'(epoch|iter)_\d+\.pth')  # mmengine CheckpointHook's filename_tmpl


def is_complete_checkpoint(path: str | Path) -> bool:
    return osp.isfile(path) and diagnose_file(path) is None


def recorded_last_checkpoint(work_dir: str) -> str | None:
    """What mmengine's ``last_checkpoint`` file names ('' if it is empty), or None without one."""
    record = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(record):
        return None
    with open(record) as f:
        return f.read().strip()


def newest_complete_checkpoint(work_dir: str, since: float | None = None) -> str | None:
    """The most recently written complete ``iter_*.pth`` / ``epoch_*.pth`` in ``work_dir``
    (written at ``since`` or later, if given)."""
    candidates = [p for p in Path(work_dir).glob('*.pth')
                  if CHECKPOINT_NAME.fullmatch(p.name) and (since is None or p.stat().st_mtime >= since)
                  and is_complete_checkpoint(p)]
    return str(max(candidates, key=lambda p: p.stat().st_mtime)) if candidates else None
