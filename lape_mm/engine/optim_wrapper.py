"""bf16 autocast for training on any device (mmengine's AmpOptimWrapper refuses CPUs)."""
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner.amp import autocast


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Runs forward and loss under ``torch.autocast`` in ``dtype`` (default bfloat16). bf16 has fp32's
    exponent range, so it needs no loss scaling; that lets ``--amp`` work on CPUs as well as on GPUs."""

    def __init__(self, *args, dtype: str | torch.dtype = 'bfloat16', **kwargs):
        super().__init__(*args, **kwargs)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        device_type = next(model.parameters()).device.type
        with super().optim_context(model), autocast(device_type=device_type, dtype=self.cast_dtype):
            yield
