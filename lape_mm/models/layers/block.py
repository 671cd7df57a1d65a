"""The LaPE transformer block: ``x = x + drop_path(attn(norm1(x) + pe))``."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Attention, DropPath, Mlp

from .window import window_partition, window_unpartition


def add_into_fresh(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``fresh + other``, written into ``fresh`` where that keeps the result's dtype.

    ``fresh`` is a tensor just computed that autograd does not save (a norm, projection or fc2
    output) and ``other`` broadcasts to its shape: at batch 1 a new ``[B, N, C]`` buffer costs
    about as much as the add itself. Under autocast a bf16 branch output plus the fp32 residual
    stream stays out of place, so the stream keeps fp32.
    """
    if fresh.dtype == torch.result_type(fresh, other):
        return fresh.add_(other)
    return fresh + other


class SplitQKVAttention(Attention):
    """timm's ``Attention`` (same parameters, fused SDPA) with q, k and v split off the qkv
    output along its own ``3`` axis: their gradients then stack straight into the qkv layout,
    one copy instead of timm's two (stack, then a reshape of the permuted stack)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.)
        x = x.transpose(1, 2).reshape(B, N, self.attn_dim)
        return self.proj_drop(self.proj(self.norm(x)))


class LaPEBlock(nn.Module):
    """Pre-norm ViT block whose attention input can receive a per-layer position embedding.

    Parameter names follow timm/DeiT (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
    ``mlp.fc1``, ``mlp.fc2``) plus ``pe_norm``, the block's own LayerNorm for the PE, so the
    authors' checkpoints load as they are. With ``window_size > 0`` attention runs inside
    non-overlapping windows of the patch grid (ViTDet); the PE is added before partitioning so
    each window keeps its absolute positions.
    """

    def __init__(self, dim: int, num_heads: int, norm_layer, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop: float = 0., attn_drop: float = 0., drop_path: float = 0., with_pe_norm: bool = False,
                 window_size: int = 0):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = SplitQKVAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), drop=drop)
        self.pe_norm = norm_layer(dim) if with_pe_norm else None
        self.window_size = window_size

    def forward(self, x: torch.Tensor, pe: torch.Tensor | None = None,
                hw: tuple[int, int] | None = None) -> torch.Tensor:
        """``x``: ``[B, N, C]`` tokens; ``pe``: ``[1, N, C]`` added to the attention input, or None."""
        y = self.norm1(x)
        if pe is not None:
            y = add_into_fresh(y, pe)
        x = add_into_fresh(self.drop_path(self._attention(y, hw)), x)
        return add_into_fresh(self.drop_path(self.mlp(self.norm2(x))), x)

    def _attention(self, y: torch.Tensor, hw: tuple[int, int] | None) -> torch.Tensor:
        if not self.window_size:
            return self.attn(y)
        B, N, C = y.shape
        windows, padded_hw = window_partition(y.view(B, hw[0], hw[1], C), self.window_size)
        out = window_unpartition(self.attn(windows), self.window_size, padded_hw, hw)
        return out.view(B, N, C)
