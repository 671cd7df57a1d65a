"""Peak memory of one call: CUDA's allocator statistics, or on CPU the profiler's allocation trace.

On CPU neither tracemalloc (it does not see torch's allocator) nor RSS (glibc keeps freed pages)
measures tensors; torch's profiler records every allocation and free, so the running sum of that
trace gives the peak of live tensor bytes, as ``max_memory_allocated`` does on CUDA. oneDNN's
internal scratch buffers are not torch allocations and are not counted.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Bytes of tensor memory at the peak of ``fn()`` above what was allocated before the call."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    trace = sorted((event.start_ns(), event.nbytes()) for event in prof.profiler.kineto_results.events()
                   if event.name() == '[memory]' and event.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, nbytes in trace:
        live += nbytes
        peak = max(peak, live)
    return peak
