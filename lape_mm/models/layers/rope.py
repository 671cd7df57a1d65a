"""Rotary position embedding (RoPE) tables from timm's layers, with naver's RoPE-ViT settings."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from timm.layers import RotaryEmbeddingCat, RotaryEmbeddingMixed, get_mixed_freqs
from timm.layers.pos_embed_sincos import get_mixed_grid, init_random_2d_freqs

ROPE_TYPES = (None, 'axial', 'mixed')
ROPE_TEMPERATURES = {'axial': 100., 'mixed': 10.}  # naver's (timm's vit_*_patch16_rope[_mixed]_224)

torch.fx.wrap('get_mixed_grid')  # fx leaf: the grid is built from concrete sizes


def build_rope(rope: Optional[str], dim: int, num_heads: int, depth: int) -> Optional[nn.Module]:
    """'axial': timm's ``RotaryEmbeddingCat`` (fixed frequencies); 'mixed': ``RotaryEmbeddingMixed``
    (learnable ``freqs [2, depth, heads, head_dim / 2]``, one set per block and head); None: no RoPE.
    Both on x-y grids of patch indices, as naver's RoPE-ViT and timm's copies of it."""
    if rope == 'axial':
        return RotaryEmbeddingCat(dim // num_heads, temperature=ROPE_TEMPERATURES[rope], in_pixels=False,
                                  grid_indexing='xy')
    if rope == 'mixed':
        return RotaryEmbeddingMixed(dim, depth, num_heads, temperature=ROPE_TEMPERATURES[rope], grid_indexing='xy')
    return None


@torch.no_grad()
def init_rope(rope: nn.Module) -> None:
    """Fresh mixed frequencies (timm's ``reset_parameters`` rebuilds only the buffers)."""
    if isinstance(rope, RotaryEmbeddingMixed):
        rope.freqs.copy_(init_random_2d_freqs(rope.dim // rope.num_heads, rope.depth, rope.num_heads,
                                              temperature=rope.temperature))
    else:
        rope.reset_parameters()


def rope_embed(rope: nn.Module, block: int, grid: Tuple[int, int]) -> torch.Tensor:
    """Block ``block``'s table for a token grid, as timm's ``AttentionRope`` takes it: ``[h*w, 2 * head_dim]``
    (axial) or ``[heads, h*w, 2 * head_dim]`` (mixed: that block's frequencies only)."""
    if isinstance(rope, RotaryEmbeddingMixed):
        t_x, t_y = get_mixed_grid(list(grid), grid_indexing=rope.grid_indexing, device=rope.freqs.device)
        return get_mixed_freqs(rope.freqs[:, block], t_x, t_y)
    return rope.get_embed(shape=list(grid))
