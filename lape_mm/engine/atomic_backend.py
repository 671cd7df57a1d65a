"""mmengine's local file backend with atomic writes, registered as ``backend='atomic_local'``.

mmengine's ``LocalBackend`` writes in place, so a run killed mid-save leaves a truncated checkpoint that
``--resume`` then picks up. A checkpoint hook selects this backend with ``backend_args=dict(backend=
'atomic_local')`` (``configs/_base_/lape_runtime.py``); other local file access is left as it is."""
from pathlib import Path

from mmengine.fileio.backends import LocalBackend, register_backend

from ..fileio import atomic_write


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """:class:`LocalBackend` whose ``put`` and ``put_text`` never expose a half-written file."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        with atomic_write(filepath) as tmp, open(tmp, 'wb') as f:
            f.write(obj)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)
