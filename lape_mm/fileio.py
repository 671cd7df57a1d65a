"""The one atomic write of lape_mm and its tools (checkpoints, converted weights, exported models, predictions).

The bytes go to a temporary file in the target's folder, are synced to disk and renamed over the target, which
POSIX makes atomic: a reader, or a run resumed after a crash, sees the old file or the new one, never half of one."""
import contextlib
import os
import tempfile
from collections.abc import Iterator

TMP_PREFIX = '.tmp-'  # what a write killed half-way leaves behind (tools and hooks clean these up)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path to write ``path``'s new content to; when the block ends without an error, the
    content replaces ``path`` (through a symbolic link: the link keeps pointing at the new file), else the
    temporary file is removed. ``path`` naming a folder is an :class:`IsADirectoryError` before any work."""
    target = os.path.realpath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(f'{path} is a folder: name a file to write, e.g. {os.path.join(path, "out")}')
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=os.path.basename(target))
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # the mode open() would give; mkstemp's is 0600
        os.close(fd)
        yield tmp
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
