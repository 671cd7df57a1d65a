"""Parameters and FLOPs through mmengine's FlopAnalyzer, with fused attention counted too.

FlopAnalyzer (fvcore's counter) counts one multiply-add as one FLOP; mmseg's and mmdet's
``get_flops`` report the same numbers. It skips ``scaled_dot_product_attention``, which would
drop attention from every model with fused attention (LaPEViT, timm), so we add a handle.
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape

from .inputs import dummy_data_samples


def sdpa_flop_jit(inputs: list, outputs: list) -> int:
    """Multiply-adds of ``softmax(q k^T) v`` for q ``[..., L, E]``, k ``[..., S, E]``, v ``[..., S, Ev]``."""
    q, k, v = (get_shape(t) for t in inputs[:3])
    return prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def flop_analyzer(model: nn.Module, inputs: tuple) -> FlopAnalyzer:
    """A quiet FlopAnalyzer of ``model(*inputs)`` that also counts fused attention."""
    analyzer = FlopAnalyzer(model, inputs).set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer


def output_tensors(outputs) -> list[torch.Tensor]:
    """The tensors of a model output (a tensor or nested tuples/lists of them), in order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [t for item in outputs for t in output_tensors(item)]


class TensorForward(nn.Module):
    """A segmentor/detector as ``images -> raw head outputs`` (``mode='tensor'``), for tracing."""

    def __init__(self, model: nn.Module, data_samples: list | None = None):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, images: torch.Tensor):
        return self.model(images, self.data_samples, mode='tensor')


def model_complexity(model: nn.Module, scope: str, hw: tuple[int, int]) -> list[tuple[str, int, int]]:
    """``(name, multiply-adds, parameters)`` of a segmentor/detector on one ``[1, 3, H, W]`` image
    (``mode='tensor'``: up to the heads' raw outputs, no post-processing), first the whole model,
    then each top-level part (backbone, neck, heads). Parts the tensor mode skips (auxiliary
    heads, used only for the training loss) count 0 multiply-adds."""
    wrapped = TensorForward(model.eval(), dummy_data_samples(scope, 1, hw))
    analyzer = flop_analyzer(wrapped, (torch.zeros(1, 3, *hw),))
    by_module = analyzer.by_module()
    params = parameter_count(model)
    rows = [('total', analyzer.total(), params[''])]
    rows += [(name, by_module.get(f'model.{name}', 0), params[name]) for name, _ in model.named_children()
             if params.get(name)]
    return rows
