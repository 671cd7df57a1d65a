"""Wall-clock timing that includes the device work a call queued."""
from __future__ import annotations

import time
from typing import Callable

import torch


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of ``fn()``, including queued device work."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start
