"""mmcv's NMS and RoIAlign under bf16 autocast on the CPU, for the length of a run.

Their CPU kernels take fp32 only, while mmdet hands them tensors in the autocast dtype, so Mask R-CNN with
``--amp`` on a CPU fails inside ``mmcv.ops.nms``. During a run this hook puts wrappers into the module globals
where mmdet's ``batched_nms`` and ``RoIAlign`` look the ops up: they compute in fp32 and return the caller's
dtype; on CUDA, or in fp32, they are the ops themselves. After the run the ops are mmcv's again."""
import functools
import importlib.util
import sys

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

OPS = (('mmcv.ops.nms', 'nms'), ('mmcv.ops.roi_align', 'roi_align'))


def _cast(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    return tuple(_cast(v, dtype) for v in value) if isinstance(value, tuple) else value


def in_fp32_on_cpu(op):
    """``op`` computed in fp32 when its first tensor argument is a bf16/fp16 CPU tensor."""
    @functools.wraps(op)
    def wrapper(first: torch.Tensor, *args, **kwargs):
        if first.device.type != 'cpu' or first.dtype not in (torch.bfloat16, torch.float16):
            return op(first, *args, **kwargs)
        out = op(*_cast((first, *args), torch.float32), **{k: _cast(v, torch.float32) for k, v in kwargs.items()})
        return _cast(out, first.dtype)
    return wrapper


@HOOKS.register_module()
class MMCVOpsCPUAutocastHook(Hook):
    """Wraps :data:`OPS` with :func:`in_fp32_on_cpu` from ``before_run`` to ``after_run``. Nothing to wrap
    with mmcv-lite (no compiled ops; mmdet cannot run there either)."""

    priority = 'VERY_HIGH'

    def __init__(self):
        self._originals: list[tuple[object, str, object]] = []

    def before_run(self, runner) -> None:
        if self._originals or importlib.util.find_spec('mmcv._ext') is None:
            return
        import mmcv.ops  # noqa: F401  (loads the modules; ``mmcv.ops.nms`` the attribute is the function)
        for module_name, op_name in OPS:
            module = sys.modules[module_name]
            self._originals.append((module, op_name, getattr(module, op_name)))
            setattr(module, op_name, in_fp32_on_cpu(getattr(module, op_name)))

    def after_run(self, runner) -> None:
        for module, op_name, op in self._originals:
            setattr(module, op_name, op)
        self._originals = []
