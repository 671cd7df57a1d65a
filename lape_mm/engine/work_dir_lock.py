"""One live training run per work dir, and the half-written files of killed runs cleared from it.

Two runs in one work dir interleave their logs and prune each other's checkpoints; a lock file refuses
the second. It is a POSIX record lock (``fcntl.lockf``), which belongs to the process alone: the kernel
releases it when that process dies, even while forked dataloader workers that inherited the file
descriptor live on (a ``flock`` would stay held by them)."""
import fcntl
import logging
import os
import os.path as osp
from typing import IO

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..errors import WorkDirBusyError
from ..fileio import TMP_PREFIX
from .phase import is_training

LOCK_NAME = '.lape_mm.lock'

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


def lock_work_dir(work_dir: str) -> IO:
    """Hold ``work_dir``'s lock for as long as the returned file stays open."""
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
    """Delete the ``.tmp-*`` files of interrupted atomic writes; returns their names."""
    if not osp.isdir(folder):
        return []
    stale = sorted(name for name in os.listdir(folder) if name.startswith(TMP_PREFIX))
    for name in stale:
        os.remove(osp.join(folder, name))
    return stale


@HOOKS.register_module()
class WorkDirLockHook(Hook):
    """Rank 0 of a training run holds the work dir's lock from ``before_run`` to ``after_run`` and first
    deletes what killed runs left half-written there. Evaluation (``runner.test()``) takes no lock."""

    priority = 'VERY_HIGH'

    def __init__(self):
        self._lock: IO | None = None

    def before_run(self, runner) -> None:
        if not is_main_process() or not is_training(runner):
            return
        self._lock = lock_work_dir(runner.work_dir)
        if stale := remove_stale_temporaries(runner.work_dir):
            print_log(f'removed {len(stale)} half-written files of an interrupted run: {stale}', logger='current',
                      level=logging.WARNING)

    def after_run(self, runner) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None
