"""Position embeddings: the LaPE authors' fixed tables and on-the-fly resizing to any token grid."""
import math
from typing import Tuple

import torch
import torch.nn.functional as F

PE_TYPES = ('learnable', 'sincos_1d', 'sincos_2d', 'none')


def is_exporting() -> bool:
    """``torch.compiler.is_exporting()``; False in TorchScript, which cannot compile that call."""
    if torch.jit.is_scripting():
        return False
    else:
        return torch.compiler.is_exporting()


def sincos_1d_pos_embed(num_positions: int, dim: int) -> torch.Tensor:
    """The authors' '1D_sin' table ``[num_positions, dim]``: position ``p`` and channel ``i`` have the
    angle ``p / 10000 ** (2 * (i // 2) / dim)``, sin on even channels and cos on odd ones.

    Bit-identical to their code: the angles in float64 (their Python floats), rounded to float32,
    then sin/cos in float32 on the same strided slices."""
    if dim % 2:
        raise ValueError(f'sincos_1d needs an even embedding dim, got {dim}')
    scales = torch.tensor([10000 ** (2 * (i // 2) / dim) for i in range(dim)], dtype=torch.float64)
    table = (torch.arange(num_positions, dtype=torch.float64)[:, None] / scales).float()
    table[:, 0::2] = torch.sin(table[:, 0::2])
    table[:, 1::2] = torch.cos(table[:, 1::2])
    return table


def _sincos_axis(length: int, dim: int) -> torch.Tensor:
    """One axis of the authors' '2D_sin' table ``[length, dim]``: coordinate ``t`` times
    ``exp(k * -(ln 10000 / dim))`` (k = 0, 2, ...), sin in even and cos in odd channels; float32
    throughout, as their ``_positionalencoding2d`` computes it (so the table is bit-identical)."""
    div_term = torch.exp(torch.arange(0., dim, 2) * -(math.log(10000.0) / dim))
    angles = torch.arange(0., length).unsqueeze(1) * div_term
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(1)


def sincos_2d_pos_embed(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """The authors' '2D_sin' table ``[h * w, dim]`` (row-major tokens): the column x encoded in channels
    ``[0, dim/2)`` and the row y in ``[dim/2, dim)``."""
    if dim % 4:
        raise ValueError(f'sincos_2d needs an embedding dim divisible by 4, got {dim}')
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing='ij')
    return torch.cat([_sincos_axis(grid[1], dim // 2)[cols.flatten()],
                      _sincos_axis(grid[0], dim // 2)[rows.flatten()]], dim=1)


def build_fixed_pos_embed(pe_type: str, grid: tuple[int, int], dim: int) -> torch.Tensor:
    """A fixed PE ``[1, 1 + h*w, C]`` exactly as the authors build it, cls slot first: 'sincos_1d' numbers
    the cls slot 0 and the patches 1..h*w; 'sincos_2d' leaves the cls slot zero."""
    num_patches = grid[0] * grid[1]
    if pe_type == 'sincos_1d':
        return sincos_1d_pos_embed(1 + num_patches, dim)[None]
    if pe_type == 'sincos_2d':
        table = sincos_2d_pos_embed(grid, dim)
        return torch.cat([table.new_zeros(1, dim), table])[None]
    raise ValueError(f'no fixed position embedding for pe_type={pe_type!r}')


def resize_pos_embed(pos_embed: torch.Tensor, new_grid: Tuple[int, int], old_grid: Tuple[int, int],
                     num_prefix_tokens: int = 1) -> torch.Tensor:
    """Bicubically resize the grid part of ``pos_embed`` ``[L, prefix + h*w, C]`` to ``new_grid``; prefix
    (cls) slots are kept. Unlike timm's ``resample_abs_pos_embed`` this keeps L > 1 (one PE per block,
    'unshare') and float64, and does not antialias (as mmseg), so it exports to ONNX."""
    if not is_exporting() and new_grid[0] == old_grid[0] and new_grid[1] == old_grid[1]:
        return pos_embed
    prefix, grid_pe = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    copies, _, dim = grid_pe.shape
    grid_pe = grid_pe.reshape(copies, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    # At least fp32 (bicubic has no half kernels on CPU); float64 stays float64 for exact checks.
    grid_pe = F.interpolate(grid_pe.to(torch.promote_types(grid_pe.dtype, torch.float32)),
                            size=[new_grid[0], new_grid[1]], mode='bicubic', align_corners=False)
    grid_pe = grid_pe.permute(0, 2, 3, 1).reshape(copies, -1, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid_pe], dim=1)


def infer_grid(num_patches: int) -> tuple[int, int]:
    """The square grid that a checkpoint's ``num_patches`` PE slots were trained on."""
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f'cannot infer a square grid from {num_patches} position slots')
    return side, side
