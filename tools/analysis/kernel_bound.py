"""The fastest a ViT step can be with this machine's kernels: its matmuls and attention alone.

Every ViT implementation of one size runs the same GEMMs (qkv, proj, fc1, fc2 and, in training,
the two gradient GEMMs of each) and the same attention. Timing exactly those kernels at the
model's shapes, back to back with nothing in between (no norms, activations, adds, dtype casts),
gives a lower bound on the step time, so an upper bound on the share of the matmul peak that
any implementation of the model can reach here: a target above it needs faster kernels, not
a better model implementation.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .timing import timed


@dataclass
class KernelBound:
    """Seconds of one step's GEMMs and attention kernels at one precision and mode."""

    precision: str
    mode: str
    linear_seconds: float
    attention_seconds: float

    @property
    def seconds(self) -> float:
        return self.linear_seconds + self.attention_seconds


def _median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up: oneDNN primitive creation, first-touch of the buffers
    return statistics.median(timed(fn, device) for _ in range(repeats))


def _linear_seconds(rows: int, fan_in: int, fan_out: int, dtype: torch.dtype, device: torch.device,
                    mode: str, repeats: int) -> float:
    """One linear layer on ``rows`` tokens: forward, plus input and weight gradients when training."""
    x = torch.randn(rows, fan_in, dtype=dtype, device=device)
    weight = torch.randn(fan_out, fan_in, dtype=dtype, device=device)
    bias = torch.randn(fan_out, dtype=dtype, device=device)
    seconds = _median_seconds(lambda: F.linear(x, weight, bias), repeats, device)
    if mode == 'train':
        grad = torch.randn(rows, fan_out, dtype=dtype, device=device)
        seconds += _median_seconds(lambda: grad @ weight, repeats, device)
        seconds += _median_seconds(lambda: grad.t() @ x, repeats, device)
    return seconds


def _attention_seconds(batch: int, heads: int, tokens: int, head_dim: int, dtype: torch.dtype,
                       device: torch.device, mode: str, repeats: int) -> float:
    """Fused attention (``scaled_dot_product_attention``): forward, plus backward when training."""
    q, k, v = (torch.randn(batch, heads, tokens, head_dim, dtype=dtype, device=device, requires_grad=mode == 'train')
               for _ in range(3))
    if mode == 'infer':
        with torch.no_grad():
            return _median_seconds(lambda: F.scaled_dot_product_attention(q, k, v), repeats, device)
    grad = torch.randn(batch, heads, tokens, head_dim, dtype=dtype, device=device)
    # autograd.grad, not backward: no accumulation into q.grad, which a bound must not count
    return _median_seconds(lambda: torch.autograd.grad(F.scaled_dot_product_attention(q, k, v), (q, k, v), grad),
                           repeats, device)


def vit_kernel_bound(embed_dims: int, num_heads: int, depth: int, tokens: int, batch: int, dtype: torch.dtype,
                     device: torch.device, mode: str, precision: str, mlp_ratio: float = 4.,
                     repeats: int = 5) -> KernelBound:
    """Time one block's kernels and scale by ``depth`` (the patch embedding, under 0.3% of a ViT-B
    step, is left out, so the bound stays a bound)."""
    hidden = int(embed_dims * mlp_ratio)
    rows = batch * tokens
    shapes = [(embed_dims, 3 * embed_dims), (embed_dims, embed_dims), (embed_dims, hidden), (hidden, embed_dims)]
    linear = sum(_linear_seconds(rows, fan_in, fan_out, dtype, device, mode, repeats) for fan_in, fan_out in shapes)
    attention = _attention_seconds(batch, num_heads, tokens, embed_dims // num_heads, dtype, device, mode, repeats)
    return KernelBound(precision, mode, depth * linear, depth * attention)
