"""ONNX export with dynamic batch, height and width, and a check against PyTorch in onnxruntime.

We use the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, torch.export underneath):
H and W are declared as multiples of the patch size (``16 * Dim``), so the PE grid and its
bicubic resize stay symbolic (``resize_pos_embed`` skips its same-grid shortcut while exporting,
and LaPEViT's autocast weight cache is bypassed). One op needs help: the stock translation of
``adaptive_avg_pool2d`` (UPerNet's pyramid pooling) bakes gather indices for the example size and
gives wrong results at other sizes, so :func:`adaptive_avg_pool2d_onnx` replaces it with
per-cell ReduceMean over slices whose bounds are computed from the runtime shape.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from onnxscript import opset18 as op

from .flops import output_tensors

OPSET = 18
MAX_GRID = 1024  # patches per side the exported model accepts (16k pixels at patch 16)
PROTOBUF_LIMIT = 2 ** 31 - 2 ** 26  # above this, weights must go to an external .data file


def _bin_edge(size, index: int, bins: int, end: bool):
    """``floor(index * size / bins)`` (start) or ``ceil((index + 1) * size / bins)`` (end), as int64 [1]."""
    numerator = op.Mul(size, op.Constant(value_ints=[index + end]))
    if end:
        numerator = op.Add(numerator, op.Constant(value_ints=[bins - 1]))
    return op.Div(numerator, op.Constant(value_ints=[bins]))


def adaptive_avg_pool2d_onnx(x, output_size):
    """PyTorch's adaptive average pooling of ``[N, C, H, W]`` for runtime H, W: the same bins."""
    out_h, out_w = output_size
    shape = op.Shape(x)
    height = op.Slice(shape, op.Constant(value_ints=[2]), op.Constant(value_ints=[3]))
    width = op.Slice(shape, op.Constant(value_ints=[3]), op.Constant(value_ints=[4]))
    axes = op.Constant(value_ints=[2, 3])
    rows = []
    for i in range(out_h):
        cells = []
        for j in range(out_w):
            starts = op.Concat(_bin_edge(height, i, out_h, False), _bin_edge(width, j, out_w, False), axis=0)
            ends = op.Concat(_bin_edge(height, i, out_h, True), _bin_edge(width, j, out_w, True), axis=0)
            cells.append(op.ReduceMean(op.Slice(x, starts, ends, axes), axes, keepdims=1))
        rows.append(op.Concat(*cells, axis=3))
    return op.Concat(*rows, axis=2)


CUSTOM_TRANSLATIONS = {torch.ops.aten.adaptive_avg_pool2d.default: adaptive_avg_pool2d_onnx,
                       torch.ops.aten._adaptive_avg_pool2d.default: adaptive_avg_pool2d_onnx}


def export_onnx(model: nn.Module, path: str | Path, example_hw: tuple[int, int], size_multiple: int = 16) -> None:
    """Export ``model(images [B, 3, H, W])`` with B, H and W dynamic (H, W multiples of ``size_multiple``: the
    patch size, or the ``size_divisor`` of a backbone that needs more, e.g. 32 for ViT-Adapter).

    The example batch is 2: torch.export specializes dimensions of size 1.
    """
    if example_hw[0] % size_multiple or example_hw[1] % size_multiple:
        raise ValueError(f'example size {example_hw} must be a multiple of {size_multiple}')
    model.eval()
    max_steps = MAX_GRID * 16 // size_multiple
    steps_h, steps_w = (torch.export.Dim(name, min=1, max=max_steps) for name in ('steps_h', 'steps_w'))
    dynamic = {0: torch.export.Dim('batch', min=1, max=1024), 2: size_multiple * steps_h, 3: size_multiple * steps_w}
    example = torch.randn(2, 3, *example_hw)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=OPSET,
                          input_names=['images'], dynamic_shapes=(dynamic,),
                          custom_translation_table=CUSTOM_TRANSLATIONS,
                          external_data=param_bytes > PROTOBUF_LIMIT, verbose=False)


def onnx_max_error(path: str | Path, model: nn.Module, shape: tuple[int, ...]) -> float:
    """Largest absolute difference between onnxruntime and PyTorch outputs on one random input."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    images = torch.randn(*shape)
    with torch.no_grad():
        expected = output_tensors(model.eval()(images))
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    if len(got) != len(expected):
        raise RuntimeError(f'{path} returned {len(got)} outputs, PyTorch {len(expected)}')
    return max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))
