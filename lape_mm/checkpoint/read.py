"""Read a checkpoint file of any supported format into native keys."""
from __future__ import annotations

from .convert import StateDict, saved_patch_grid, to_lape_state_dict
from .safe_load import safe_load


def read_checkpoint(path: str, prefix: str | None = None) -> tuple[StateDict, str, tuple[int, int] | None]:
    """The file's weights in native keys, its format, and the PE grid saved with it (if any)."""
    checkpoint = safe_load(path)
    state_dict, fmt = to_lape_state_dict(checkpoint, prefix)
    return state_dict, fmt, saved_patch_grid(checkpoint)
