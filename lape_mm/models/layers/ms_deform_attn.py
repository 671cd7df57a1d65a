"""Multi-scale deformable attention as ViT-Adapter uses it: the output projection only, no residual.

mmcv's ``MultiScaleDeformableAttention`` module adds its (normalized) query back as a residual and
applies dropout; ViT-Adapter's injector and extractor add their own residual around an attention
that has neither, so only mmcv's sampling functions are reused here.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn


def deformable_sampling(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                        locations: torch.Tensor, weights: torch.Tensor, im2col_step: int = 64,
                        shapes: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
    """Attention-weighted bilinear samples of ``value`` ``[B, S, heads, d]`` at ``locations``
    ``[B, Q, heads, levels, points, 2]`` (x, y in [0, 1]) with ``weights`` ``[B, Q, heads, levels,
    points]``: ``[B, Q, heads * d]``.

    Runs in fp32 (or wider) with autocast off, as ViT-Adapter's CUDA op does under amp: bilinear
    weights and the sum over levels x points lose too much in bf16/fp16. CUDA uses mmcv's compiled
    kernel, other devices its PyTorch (grid_sample) version, which splits and reshapes by ``shapes`` (the
    ``spatial_shapes`` as ints) when given: torch.export then keeps the sizes symbolic instead of reading
    them out of a tensor. mmcv is imported here, not with the module: mmcv without compiled ops
    (mmcv-lite) cannot load that module, and LaPEViT alone needs no ops.
    """
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch
    dtype = torch.promote_types(value.dtype, torch.float32)
    with torch.autocast(value.device.type, enabled=False):
        value, locations, weights = value.to(dtype), locations.to(dtype), weights.to(dtype)
        if value.is_cuda:
            return MultiScaleDeformableAttnFunction.apply(value, spatial_shapes, level_start_index, locations,
                                                          weights, im2col_step)
        return multi_scale_deformable_attn_pytorch(value, spatial_shapes if shapes is None else shapes, locations,
                                                   weights)


class MSDeformAttn(nn.Module):
    """Deformable DETR's attention: each query attends to ``num_points`` learned offsets around its
    reference point on each of ``num_levels`` maps. ``ratio`` scales the value width (ViT-Adapter's
    ``deform_ratio``). Parameter names are the original's, so its checkpoints load as they are."""

    def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int, ratio: float = 1.0,
                 im2col_step: int = 64):
        super().__init__()
        value_dim = int(dim * ratio)
        if value_dim % num_heads:
            raise ValueError(f'dim * deform_ratio = {value_dim} is not divisible by deform_num_heads={num_heads}')
        self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
        self.im2col_step = im2col_step
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, value_dim)
        self.output_proj = nn.Linear(value_dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's init: head h starts sampling along direction ``2*pi*h/heads`` (scaled to
        the unit square's border), point k at k+1 cells; uniform attention weights."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        steps = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        grid = directions[:, None, None, :] * steps[None, None, :, None]  # [heads, 1, points, 2]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.expand(-1, self.num_levels, -1, -1).flatten())
        for layer in (self.attention_weights, self.value_proj, self.output_proj):
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.xavier_uniform_(self.output_proj.weight)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, feat: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                shapes: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
        """``query`` ``[B, Q, C]``; ``reference_points`` ``[1 or B, Q, 1 or levels, 2]`` (x, y in [0, 1]);
        ``feat`` ``[B, S, C]``: the ``spatial_shapes`` ``[levels, 2]`` (h, w) maps flattened and
        concatenated, level l starting at ``level_start_index[l]`` (``shapes``: see :func:`deformable_sampling`).
        Returns ``[B, Q, C]``."""
        B, Q, _ = query.shape
        value = self.value_proj(feat).view(B, feat.shape[1], self.num_heads, -1)
        offsets = self.sampling_offsets(query).view(B, Q, self.num_heads, self.num_levels, self.num_points, 2)
        weights = self.attention_weights(query).view(B, Q, self.num_heads, self.num_levels * self.num_points)
        weights = weights.softmax(-1).view(B, Q, self.num_heads, self.num_levels, self.num_points)
        # Offsets are in cells of each level: divide by that level's (w, h).
        locations = reference_points[:, :, None, :, None, :] + offsets / spatial_shapes.flip(-1)[:, None, :]
        out = deformable_sampling(value, spatial_shapes, level_start_index, locations, weights, self.im2col_step,
                                  shapes)
        return self.output_proj(out.to(value.dtype))
