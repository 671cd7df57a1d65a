"""One live training run per work dir, and resuming from the newest complete checkpoint in it.

Two runs in one work dir interleave their logs and prune each other's checkpoints; a lock file
(``flock``, which the kernel releases when its holder dies) refuses the second. A run killed
while saving leaves a ``.tmp-*`` file (see :mod:`lape_mm.engine.atomic_backend`), and a ``last_checkpoint``
can be empty or name a file that was deleted: resume looks past both.
"""
from __future__ import annotations

import fcntl
import os
import os.path as osp
import re
from pathlib import Path
from typing import IO

from lape_mm.checkpoint.safe_load import diagnose_file
from lape_mm.engine.atomic_backend import TMP_PREFIX

LOCK_NAME = '.lape_mm.lock'
CHECKPOINT_NAME = re.compile(r'(epoch|iter)_\d+\.pth')  # mmengine CheckpointHook's filename_tmpl


class WorkDirBusyError(RuntimeError):
    """Another live run holds the work dir."""


def launch_rank() -> int:
    """This process's global rank as the launcher set it (before the process group exists)."""
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK'):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def lock_work_dir(work_dir: str) -> IO | None:
    """Hold ``work_dir``'s lock for as long as the returned file stays open (rank 0 only)."""
    if launch_rank() != 0:
        return None
    os.makedirs(work_dir, exist_ok=True)
    lock = open(osp.join(work_dir, LOCK_NAME), 'a+')
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        pid = lock.read().strip() or 'unknown'
        lock.close()
        raise WorkDirBusyError(
            f'work dir {work_dir} is in use by another training run (PID {pid}); two runs there would '
            f'interleave their logs and delete each other\'s checkpoints. Wait for it or stop it '
            f'(kill {pid}), or pass another --work-dir.') from None
    lock.seek(0)
    lock.truncate()
    lock.write(f'{os.getpid()}\n')
    lock.flush()
    return lock


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete the ``.tmp-*`` files of interrupted checkpoint writes; returns their names."""
    if not osp.isdir(folder):
        return []
    stale = sorted(name for name in os.listdir(folder) if name.startswith(TMP_PREFIX))
    for name in stale:
        os.remove(osp.join(folder, name))
    return stale


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
