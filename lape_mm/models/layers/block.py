"""The LaPE transformer block: ``x = x + drop_path(attn(norm1(x) + pe))``."""
import warnings
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import AttentionRope, DropPath, LayerScale, Mlp, apply_rot_embed_cat

from ..arguments import check_choice
from .window import window_partition, window_unpartition

# fx leaves: the padding depends on concrete sizes.
torch.fx.wrap('window_partition')
torch.fx.wrap('window_unpartition')

WINDOW_PADS = ('input', 'qkv')


class PENormalizer(nn.Module):
    """A block as :meth:`LaPEViT.block_pos_embed` sees it (for TorchScript, where blocks with and without
    ``pe_norm`` have different types)."""

    def normalize_pe(self, pe: torch.Tensor) -> torch.Tensor:
        pass


with warnings.catch_warnings():  # torch 2.14 warns that TorchScript is deprecated, at every import
    warnings.simplefilter('ignore', FutureWarning)
    PENormalizer = torch.jit.interface(PENormalizer)


class LaPEBlock(nn.Module):
    """Pre-norm ViT block whose attention input can receive a per-layer position embedding.

    Parameter names are timm/DeiT's plus ``pe_norm``, the block's own LayerNorm for the PE, so the
    authors' checkpoints load as they are. ``window_size > 0`` runs attention inside windows of the
    patch grid (ViTDet), after the PE is added, so windows keep absolute positions; a grid they do not
    tile pads the normalized input (``window_pad='input'``, ViTDet) or q, k and v (``'qkv'``,
    ViT-Adapter). ``layer_scale_init`` adds timm's LayerScale to both branches.
    Attention is timm's ``AttentionRope``: given a RoPE table it rotates q and k of all but the first
    ``num_prefix_tokens`` tokens (the cls token keeps no position), inside each window for window attention.
    ``with_pe_gate`` scales the PE term by a per-channel gate ``pe_gate`` (LayerScale) that starts at 0.
    """

    def __init__(self, dim: int, num_heads: int, norm_layer, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop: float = 0., attn_drop: float = 0., drop_path: float = 0., with_pe_norm: bool = False,
                 window_size: int = 0, window_pad: str = 'input', layer_scale_init: Optional[float] = None,
                 num_prefix_tokens: int = 1, with_pe_gate: bool = False):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = AttentionRope(dim, num_heads=num_heads, qkv_bias=qkv_bias, num_prefix_tokens=num_prefix_tokens,
                                  attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), drop=drop)
        self.pe_norm = norm_layer(dim) if with_pe_norm else None
        self.pe_gate = LayerScale(dim, init_values=0.) if with_pe_gate else None
        check_choice('window_pad', window_pad, WINDOW_PADS)
        self.window_size, self.window_pad = window_size, window_pad
        scale = (lambda: LayerScale(dim, layer_scale_init)) if layer_scale_init is not None else nn.Identity
        self.ls1, self.ls2 = scale(), scale()

    def forward(self, x: torch.Tensor, pe: Optional[torch.Tensor] = None, hw: Tuple[int, int] = (0, 0),
                rope: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x``: ``[B, N, C]`` tokens of an ``hw`` grid; ``pe``: ``[1, N, C]`` for the attention input, or None;
        ``rope``: the RoPE table for the grid attention runs on (``hw``, or one window), or None."""
        if pe is not None and self.pe_gate is not None:
            pe = self.pe_gate(pe)
        y = self.norm1(x)
        if pe is not None:
            y = y + pe
        x = x + self.drop_path(self.ls1(self._attention(y, hw, rope)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))

    @torch.jit.export  # TorchScript: called from the backbone, not from forward
    def normalize_pe(self, pe: torch.Tensor) -> torch.Tensor:
        """``pe_norm(pe)`` with a finite gradient: none flows back into PE slots the norm sees as constant
        (variance below its eps, e.g. a fixed table's zero cls slot). Their output is the norm's bias, but
        their input gradient grows ``1/sqrt(eps)``-fold per block and overflows within a few blocks."""
        norm = self.pe_norm
        if norm is not None:  # (written so that TorchScript compiles blocks without a pe_norm too)
            if torch.is_grad_enabled():  # (not pe.requires_grad: fx traces must keep the check)
                constant = pe.var(dim=-1, unbiased=False, keepdim=True) < norm.eps
                pe = torch.where(constant, pe.detach(), pe)
            return norm(pe)
        raise RuntimeError('this block has no pe_norm: only the LaPE joins normalize the PE per block')

    def _attention(self, y: torch.Tensor, hw: Tuple[int, int], rope: Optional[torch.Tensor]) -> torch.Tensor:
        if self.window_size == 0:
            return self.attn(y, rope=rope)
        if self.window_pad == 'qkv':
            return self._qkv_padded_window_attention(y, hw, rope)
        B, N, C = y.shape
        windows, padded_hw = window_partition(y.view(B, hw[0], hw[1], C), self.window_size)
        out = window_unpartition(self.attn(windows, rope=rope), self.window_size, padded_hw, hw)
        return out.reshape(B, N, C)

    def _qkv_padded_window_attention(self, y: torch.Tensor, hw: Tuple[int, int],
                                     rope: Optional[torch.Tensor]) -> torch.Tensor:
        """``attn`` inside windows, ViT-Adapter style: q, k and v (not ``y``) are zero-padded to
        whole windows, so a padded key has logit 0 and value 0."""
        B, N, C = y.shape
        qkv = self.attn.qkv(y).view(B, hw[0], hw[1], 3 * C)
        qkv, padded_hw = window_partition(qkv, self.window_size)
        qkv = qkv.view(qkv.shape[0], -1, 3, self.attn.num_heads, self.attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = self.attn.q_norm(qkv[0]), self.attn.k_norm(qkv[1]), qkv[2]
        if rope is not None:  # windows hold patch tokens only
            q, k = apply_rot_embed_cat(q, rope).type_as(v), apply_rot_embed_cat(k, rope).type_as(v)
        out = F.scaled_dot_product_attention(q, k, v,
                                             dropout_p=self.attn.attn_drop.p if self.training else 0.)
        out = window_unpartition(out.transpose(1, 2).flatten(2), self.window_size, padded_hw, hw)
        return self.attn.proj_drop(self.attn.proj(self.attn.norm(out.reshape(B, N, C))))
