"""Position embeddings: builders for each PE type and on-the-fly resizing to any token grid."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed

PE_TYPES = ('learnable', 'sincos_1d', 'sincos_2d', 'none')


def sincos_1d_pos_embed(num_positions: int, dim: int, temperature: float = 10000.) -> torch.Tensor:
    """Transformer-style 1-D sinusoidal embedding over flattened positions, ``[num_positions, dim]``."""
    if dim % 2:
        raise ValueError(f'sincos_1d needs an even embedding dim, got {dim}')
    omega = 1. / temperature ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def build_fixed_pos_embed(pe_type: str, grid: tuple[int, int], dim: int, num_prefix_tokens: int) -> torch.Tensor:
    """A fixed (sinusoidal) PE ``[1, prefix + H*W, C]``; prefix (cls) slots are zero, as in MoCo v3/MAE."""
    num_patches = grid[0] * grid[1]
    if pe_type == 'sincos_1d':
        patch_pe = sincos_1d_pos_embed(num_patches, dim)
    elif pe_type == 'sincos_2d':
        if dim % 4:
            raise ValueError(f'sincos_2d needs an embedding dim divisible by 4, got {dim}')
        patch_pe = build_sincos2d_pos_embed(list(grid), dim=dim, reverse_coord=True, interleave_sin_cos=False)
    else:
        raise ValueError(f'no fixed position embedding for pe_type={pe_type!r}')
    prefix = patch_pe.new_zeros(num_prefix_tokens, dim)
    return torch.cat([prefix, patch_pe], dim=0)[None]


def resize_pos_embed(pos_embed: torch.Tensor, new_grid: tuple[int, int], old_grid: tuple[int, int],
                     num_prefix_tokens: int = 1) -> torch.Tensor:
    """Bicubically resize the grid part of ``pos_embed`` ``[L, prefix + h*w, C]`` to ``new_grid``.

    Prefix (cls) slots are kept as they are. Unlike timm's ``resample_abs_pos_embed`` this keeps
    a leading dim of L > 1 (one PE per block, 'unshare'); no antialiasing, as in mmseg, so that
    the op exports to ONNX.
    """
    if not torch.compiler.is_exporting() and tuple(new_grid) == tuple(old_grid):
        return pos_embed
    prefix, grid_pe = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    copies, _, dim = grid_pe.shape
    grid_pe = grid_pe.reshape(copies, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    grid_pe = F.interpolate(grid_pe.float(), size=tuple(new_grid), mode='bicubic', align_corners=False)
    grid_pe = grid_pe.permute(0, 2, 3, 1).reshape(copies, -1, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid_pe], dim=1)


def infer_grid(num_patches: int) -> tuple[int, int]:
    """The square grid that a checkpoint's ``num_patches`` PE slots were trained on."""
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f'cannot infer a square grid from {num_patches} position slots')
    return side, side
