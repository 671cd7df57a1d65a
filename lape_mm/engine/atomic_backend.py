"""Atomic checkpoint writes: mmengine's local backend writes in place, so a run killed mid-save leaves
a truncated checkpoint that ``--resume`` then picks up. This one writes a temporary file in the same
folder and renames it over the target, which POSIX makes atomic."""
import os
import tempfile
from pathlib import Path

from mmengine.fileio.backends import LocalBackend, register_backend

TMP_PREFIX = '.tmp-'


class AtomicLocalBackend(LocalBackend):
    """:class:`LocalBackend` whose ``put`` never exposes a half-written file."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        folder = os.path.dirname(os.path.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=os.path.basename(filepath))
        try:
            umask = os.umask(0)  # the mode open() would give (0666 less the umask); mkstemp gives 0600
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
            with os.fdopen(fd, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_path, filepath)
        except BaseException:
            os.unlink(tmp_path)
            raise


def use_atomic_local_backend() -> None:
    """Make every mmengine local-file write (checkpoints included) atomic in this process."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
