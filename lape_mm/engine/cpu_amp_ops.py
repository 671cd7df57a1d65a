"""mmcv's NMS and RoIAlign under bf16 autocast on the CPU.

Their CPU kernels take fp32 only, while mmdet hands them tensors in the autocast dtype, so Mask R-CNN with
``--amp`` on a CPU fails inside ``mmcv.ops.nms``. The wrapped ops compute in fp32 and return the caller's
dtype; on CUDA, or in fp32, they are the ops themselves."""
import functools
import importlib.util
import sys

import torch


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
    wrapper.__wrapped_for_cpu_amp__ = True
    return wrapper


def patch_mmcv_cpu_amp_ops() -> None:
    """Wrap ``mmcv.ops.nms.nms`` and ``mmcv.ops.roi_align.roi_align`` in the module globals where
    mmdet's ``batched_nms`` and ``RoIAlign`` look them up. Idempotent. Nothing to wrap with mmcv-lite
    (no compiled ops; mmdet cannot run there either)."""
    if importlib.util.find_spec('mmcv._ext') is None:
        return
    import mmcv.ops  # noqa: F401  (loads the modules; ``mmcv.ops.nms`` the attribute is the function)
    for module_name, op_name in (('mmcv.ops.nms', 'nms'), ('mmcv.ops.roi_align', 'roi_align')):
        module = sys.modules[module_name]
        if not getattr(getattr(module, op_name), '__wrapped_for_cpu_amp__', False):
            setattr(module, op_name, in_fp32_on_cpu(getattr(module, op_name)))
