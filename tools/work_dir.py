"""One live training run per work dir, and resuming from the newest complete checkpoint in it.

Two runs in one work dir interleave their logs and prune each other's checkpoints; a lock file
refuses the second. It is a POSIX record lock (``fcntl.lockf``), which belongs to the process alone:
the kernel releases it when that process dies, even while forked dataloader workers that inherited
the file descriptor live on (a ``flock`` would stay held by them). A run killed
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


# Work dirs this process holds, by the lock file's (device, inode): a record lock never conflicts with
# its own process, and closing any descriptor of the file would drop it, so the process checks itself.
_held: dict[tuple[int, int], IO] = {}


def _file_id(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _holder_pid(lock: IO) -> int | None:
    """The PID the holder wrote into the lock file, if that process is alive."""
    lock.seek(0)
    text = lock.read().strip()
    if not text.isdigit():
        return None
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by another user
        pass
    return int(text)


def _busy(work_dir: str, pid: int | None) -> WorkDirBusyError:
    holder, stop = (f' (PID {pid})', f'stop it (kill {pid})') if pid else ('', 'stop it')
    return WorkDirBusyError(
        f'work dir {work_dir} is in use by another training run{holder}; two runs there would interleave '
        f'their logs and delete each other\'s checkpoints. Wait for it or {stop}, or pass another --work-dir.')


def lock_work_dir(work_dir: str) -> IO | None:
    """Hold ``work_dir``'s lock for as long as the returned file stays open (rank 0 only)."""
    if launch_rank() != 0:
        return None
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    if osp.exists(path) and (held := _held.get(_file_id(os.stat(path)))) is not None and not held.closed:
        raise _busy(work_dir, os.getpid())
    lock = open(path, 'a+')
    try:
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another process holds it
        pid = _holder_pid(lock)
        lock.close()
        raise _busy(work_dir, pid) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f'{os.getpid()}\n')
    lock.flush()
    _held[_file_id(os.fstat(lock.fileno()))] = lock
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
