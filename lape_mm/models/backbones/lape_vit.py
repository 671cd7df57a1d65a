"""LaPEViT: a plain ViT backbone whose position embedding is joined per layer (LaPE, ICCV 2023)."""
import warnings
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from timm.layers import PatchEmbed, trunc_normal_
from torch.func import functional_call

from ..arguments import ConfigError, check_choice, check_fraction, check_indices, check_int, check_size
from ..layers import (PE_TYPES, ROPE_TYPES, AutocastWeightCache, LaPEBlock, PENormalizer, build_fixed_pos_embed,
                      build_rope, init_rope, resize_pos_embed, rope_embed)
from .checkpoint_fit import load_pretrained, pretrained_checkpoint

PE_JOINS = ('lape', 'lape_independent', 'add', 'share', 'unshare', 'add_lape')
LAPE_JOINS = ('lape', 'lape_independent', 'add_lape')  # the joins with a pe_norm per block
ARCH_ZOO = {
    'tiny': dict(embed_dims=192, num_layers=12, num_heads=3),
    'small': dict(embed_dims=384, num_layers=12, num_heads=6),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12),
    'large': dict(embed_dims=1024, num_layers=24, num_heads=16),
}


def check_image_size(img: torch.Tensor, in_channels: int, patch_size: int, pad_to_patch: bool) -> torch.Tensor:
    """``img`` itself, after checking that it is ``[B, in_channels, H, W]`` with H, W fitting the patches."""
    if img.dim() != 4 or img.shape[1] != in_channels:
        raise ValueError(f'expected images [B, {in_channels}, H, W], got {list(img.shape)}; '
                         f'set in_channels to match the input')
    H, W = img.shape[-2:]
    if not pad_to_patch and (H % patch_size or W % patch_size):
        raise ValueError(f'input size {H}x{W} is not a multiple of patch_size={patch_size}; '
                         f'resize or pad the image (e.g. size_divisor={patch_size} in the data '
                         f'preprocessor) or set pad_to_patch=True')
    return img


# fx leaves: they read concrete sizes, so a traced model still checks inputs and resizes its PE.
torch.fx.wrap('check_image_size')
torch.fx.wrap('resize_pos_embed')


@MODELS.register_module()
class LaPEViT(BaseModule):
    """Vision transformer with layer-adaptive position embedding, for mmseg and mmdet.

    ``pe_join`` decides where the PE enters (:meth:`block_pos_embed`): 'lape' and 'lape_independent'
    into every block's normalized attention input, through the block's own ``pe_norm``; 'add' once
    into the input tokens (the standard ViT); 'share' and 'unshare' into the residual stream before
    every block (one PE, or one per block); 'add_lape' both adds it to the input tokens, as 'add', and gives
    every block the progressive LaPE term through a per-channel gate ``pe_gate`` that starts at 0: loaded
    from a plain ViT checkpoint, the model starts as that checkpoint's function, and the gates learn from the
    first step. ``pe_type`` is 'learnable' (a Parameter), 'sincos_1d' / 'sincos_2d' (the authors' fixed
    tables, a persistent buffer as in their checkpoints) or 'none'.

    ``rope`` adds rotary position embedding inside attention, beside any absolute PE: 'axial' or 'mixed'
    (learnable frequencies ``rope.freqs``), naver's RoPE-ViT through timm's layers (:mod:`..layers.rope`).
    It rotates the patch tokens' q and k (not the cls token's), with tables computed for each input's grid.

    The PE is stored for the ``img_size`` grid (cls slot first, as in DeiT) and bicubically resized
    to each input's grid. Returns one ``[B, C, H/p, W/p]`` map per ``out_indices`` entry (``[map,
    cls_token]`` with ``output_cls_token``), like mmseg's ``VisionTransformer``: ``out_indices`` name
    distinct blocks in increasing order (negative ones count from the end), so maps come shallow to
    deep. ``window_size > 0`` makes the blocks outside ``global_attn_indexes`` attend in windows
    (ViTDet; see :class:`LaPEBlock`).
    Inference under autocast reuses linear weights cast once (:class:`AutocastWeightCache`), unless
    ``autocast_weight_cache=False``."""

    num_prefix_tokens = 1  # the PE always stores a cls slot, so DeiT/timm/mmseg checkpoints fit
    extra_prefixes: Tuple[str, ...] = ()  # state-dict prefixes a subclass adds on top of a plain ViT
    __jit_unused_properties__ = ['is_init']  # TorchScript: mmengine's BaseModule bookkeeping
    __constants__ = ['num_prefix_tokens']

    def __init__(self,
                 arch: str = 'base',
                 img_size: int | tuple[int, int] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 embed_dims: int | None = None,
                 num_layers: int | None = None,
                 num_heads: int | None = None,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 pe_join: str = 'lape',
                 pe_type: str = 'learnable',
                 rope: str | None = None,
                 out_indices: int | Sequence[int] = -1,
                 with_cls_token: bool = True,
                 output_cls_token: bool = False,
                 final_norm: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict | None = None,
                 with_cp: bool = False,
                 frozen_stages: int = -1,
                 pad_to_patch: bool = False,
                 window_size: int = 0,
                 global_attn_indexes: Sequence[int] = (),
                 window_pad: str = 'input',
                 layer_scale_init: float | None = None,
                 autocast_weight_cache: bool = True,
                 pretrained: str | None = None,
                 init_cfg: dict | None = None):
        super().__init__(init_cfg=self._pretrained_to_init_cfg(pretrained, init_cfg))
        check_choice('arch', arch, tuple(ARCH_ZOO))
        check_choice('pe_join', pe_join, PE_JOINS)
        check_choice('pe_type', pe_type, PE_TYPES)
        check_choice('rope', rope, ROPE_TYPES)
        self.img_size = check_size('img_size', img_size)
        for name, value, low in (('patch_size', patch_size, 1), ('in_channels', in_channels, 1),
                                 ('window_size', window_size, 0)):
            check_int(name, value, low)
        for name, value in (('drop_rate', drop_rate), ('attn_drop_rate', attn_drop_rate),
                            ('drop_path_rate', drop_path_rate)):
            check_fraction(name, value)
        if pe_join == 'unshare' and pe_type != 'learnable':
            raise ConfigError(f"pe_join='unshare' learns one PE per block and needs pe_type='learnable', "
                              f'got pe_type={pe_type!r}')
        if output_cls_token and not with_cls_token:
            raise ConfigError('output_cls_token=True needs with_cls_token=True')
        if window_size and with_cls_token:
            raise ConfigError('window attention works on patch tokens only: set with_cls_token=False '
                              'when window_size > 0')
        if self.img_size[0] % patch_size or self.img_size[1] % patch_size:
            raise ConfigError(f'img_size={self.img_size} is not a multiple of patch_size={patch_size}: the PE '
                              f'grid would drop the remainder; use a multiple, e.g. '
                              f'{tuple(s // patch_size * patch_size for s in self.img_size)}')
        preset = ARCH_ZOO[arch]
        self.embed_dims, self.num_layers, num_heads = (
            preset[name] if value is None else check_int(name, value)
            for name, value in (('embed_dims', embed_dims), ('num_layers', num_layers), ('num_heads', num_heads)))
        self.patch_size, self.in_channels = patch_size, in_channels
        self.patch_grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.pe_join, self.pe_type = pe_join, pe_type
        self.with_cls_token, self.output_cls_token = with_cls_token, output_cls_token
        self.final_norm, self.with_cp = final_norm, with_cp
        self.pad_to_patch, self.frozen_stages = pad_to_patch, frozen_stages
        self.out_indices = check_indices('out_indices', out_indices, self.num_layers)
        if bad := [i for i in global_attn_indexes if not 0 <= i < self.num_layers]:
            raise ConfigError(f'global_attn_indexes entry {bad[0]} is out of range for {self.num_layers} layers')

        self.norm_cfg = norm_cfg = norm_cfg or dict(type='LN', eps=1e-6)
        norm_layer = lambda dim: build_norm_layer(norm_cfg, dim)[1]  # noqa: E731
        self.patch_embed = PatchEmbed(img_size=None, patch_size=patch_size, in_chans=in_channels,
                                      embed_dim=self.embed_dims, output_fmt='NCHW', strict_img_size=False,
                                      dynamic_img_pad=pad_to_patch)
        # No cls_token Parameter at all without a cls token: one that never gets a gradient makes DDP fail.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims)) if with_cls_token else None
        self._build_pos_embed()
        self.rope = build_rope(rope, self.embed_dims, num_heads, self.num_layers)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, self.num_layers).tolist()
        self.blocks = nn.ModuleList(
            LaPEBlock(self.embed_dims, num_heads, norm_layer, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                      drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i],
                      with_pe_norm=pe_join in LAPE_JOINS and pe_type != 'none',
                      with_pe_gate=pe_join == 'add_lape' and pe_type != 'none',
                      num_prefix_tokens=self.num_prefix_tokens if with_cls_token else 0,
                      window_size=0 if i in global_attn_indexes else window_size, window_pad=window_pad,
                      layer_scale_init=layer_scale_init)
            for i in range(self.num_layers))
        self.norm = norm_layer(self.embed_dims) if final_norm else nn.Identity()
        self._weight_casts = AutocastWeightCache() if autocast_weight_cache else None
        self._init_params()
        self._freeze_stages()

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _pretrained_to_init_cfg(pretrained: str | None, init_cfg: dict | None) -> dict | None:
        """mmseg's ``model.pretrained=PATH`` (passed on to the backbone) as ``init_cfg``."""
        if pretrained is None:
            return init_cfg
        new = f"init_cfg=dict(type='Pretrained', checkpoint={pretrained!r})"
        if init_cfg is not None:
            raise ConfigError(f'give the checkpoint either as pretrained=... or as {new}, not both')
        warnings.warn(f'pretrained=PATH is deprecated in OpenMMLab 2.x; use {new}', DeprecationWarning)
        return dict(type='Pretrained', checkpoint=pretrained)

    def _build_pos_embed(self) -> None:
        """``pos_embed``: a Parameter (learnable), a persistent buffer (fixed tables) or None."""
        slots = self.num_prefix_tokens + self.patch_grid[0] * self.patch_grid[1]
        if self.pe_type == 'learnable':
            copies = self.num_layers if self.pe_join == 'unshare' else 1
            self.pos_embed = nn.Parameter(torch.zeros(copies, slots, self.embed_dims))
        elif self.pe_type == 'none':
            self.register_buffer('pos_embed', None)
        else:
            self.register_buffer('pos_embed', build_fixed_pos_embed(self.pe_type, self.patch_grid, self.embed_dims))

    @torch.no_grad()
    def _init_params(self) -> None:
        """DeiT/timm initialisation of every tensor: trunc-normal(0.02) PE and Linear weights, zero
        biases, identity norms, the fixed PE table (so ``to_empty`` + ``init_weights`` works)."""
        for m in self.modules():
            if m is not self and hasattr(m, 'reset_parameters'):
                m.reset_parameters()
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias) if m.bias is not None else None
        if isinstance(self.pos_embed, nn.Parameter):
            trunc_normal_(self.pos_embed, std=.02)
        elif self.pos_embed is not None:
            self.pos_embed.copy_(build_fixed_pos_embed(self.pe_type, self.patch_grid, self.embed_dims))
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        if self.rope is not None:
            init_rope(self.rope)

    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type='Pretrained', checkpoint=...)`` (see :func:`load_pretrained`), else initialise."""
        if (path := pretrained_checkpoint(self.init_cfg)) is not None:
            load_pretrained(self, path, prefix=self.init_cfg.get('prefix'), strict=self.init_cfg.get('strict', True))
        else:
            self._init_params()
        self._is_init = True

    def _freeze_stages(self) -> None:
        """Freeze the embeddings (stage 0) and the first ``frozen_stages`` blocks."""
        if self.frozen_stages < 0:
            return
        for module in [self.patch_embed, *self.blocks[:self.frozen_stages]]:
            module.eval()
            module.requires_grad_(False)
        for param in (self.cls_token, self.pos_embed):
            if isinstance(param, nn.Parameter):
                param.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if self._weight_casts is not None:
            self._weight_casts.clear()
        return self

    # ------------------------------------------------------------------ forward
    def embed(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image ``[B, in_channels, H, W]`` to tokens ``[B, (1 +) h*w, C]`` (cls first) and the grid; no PE added."""
        x = self.patch_embed(check_image_size(img, self.in_channels, self.patch_size, self.pad_to_patch))
        hw = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1), hw
        return x.contiguous(), hw

    def grid_pos_embed(self, hw: Tuple[int, int]) -> Optional[torch.Tensor]:
        """The PE resized to an ``hw`` token grid: ``[copies, T, C]`` for ``embed``'s tokens, or None."""
        pe = self.pos_embed
        if pe is None:
            return None
        pe = resize_pos_embed(pe, hw, self.patch_grid, self.num_prefix_tokens)
        return pe if self.cls_token is not None else pe[:, self.num_prefix_tokens:]

    def join_input_pe(self, x: torch.Tensor, hw: Tuple[int, int]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Tokens from :meth:`embed` with the input PE added ('add', 'add_lape'), and the PE that reaches
        block 0 (None for 'add' and 'none')."""
        pe = self.grid_pos_embed(hw)
        if pe is not None and self.pe_join == 'add':
            return x + pe, None
        if pe is not None and self.pe_join == 'add_lape':
            return x + pe, pe
        return x, pe

    def block_pos_embed(self, i: int, blk: PENormalizer, pe: Optional[torch.Tensor]
                        ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Block ``i``'s PE term, from the PE ``pe`` that reaches it, and the PE passed on to block i+1.

        'lape' and 'add_lape': ``p_l = pe_norm_l(p_{l-1})``, both the term (gated in the block for 'add_lape')
        and what is passed on; 'lape_independent':
        ``pe_norm_l(pe)``; 'share': ``pe``; 'unshare': block l's own PE. The LaPE terms go into the block's
        normalized attention input, the others into the residual stream. Batch size 1: O(N*C) per layer."""
        if pe is None:
            return None, None
        if self.pe_join == 'lape' or self.pe_join == 'add_lape':
            pe = blk.normalize_pe(pe)
            return pe, pe
        if self.pe_join == 'lape_independent':
            return blk.normalize_pe(pe), pe
        if self.pe_join == 'unshare':
            return pe[i:i + 1], pe
        return pe, pe  # 'share'

    def pos_embed_terms(self, hw: Tuple[int, int]) -> Tuple[Optional[torch.Tensor], List[Optional[torch.Tensor]]]:
        """Every PE term for a token grid, for analysis: ``(input_pe, block_pes)``, the PE added before block 0
        ('add', 'add_lape') and each block's term from :meth:`block_pos_embed` (before an 'add_lape' gate).
        The forward makes them one at a time."""
        pe = self.grid_pos_embed(hw)
        if self.pe_join == 'add':
            return pe, [None] * self.num_layers
        block_pes: List[Optional[torch.Tensor]] = []
        block_pe = pe
        for i, blk in enumerate(self.blocks):
            term, block_pe = self.block_pos_embed(i, blk, block_pe)
            block_pes.append(term)
        return (pe if self.pe_join == 'add_lape' else None), block_pes

    def forward_blocks(self, x: torch.Tensor, hw: Tuple[int, int], pe: Optional[torch.Tensor],
                       start: int = 0, stop: Optional[int] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Run ``blocks[start:stop]`` on tokens ``x`` ``[B, T, C]`` of an ``hw`` grid, given the PE that reaches
        block ``start`` (from :meth:`join_input_pe`, or this method's for a later ``start``). Returns the tokens
        after the last block run (before ``norm``) and the PE that reaches block ``stop``."""
        stop = self.num_layers if stop is None else stop
        if torch.jit.is_scripting():
            weight_casts = None
        else:
            weight_casts = None if self._weight_casts is None else self._weight_casts.for_inference(self.blocks, x)
        for i, blk in enumerate(self.blocks):
            if start <= i < stop:
                term, pe = self.block_pos_embed(i, blk, pe)
                if term is not None and (self.pe_join == 'share' or self.pe_join == 'unshare'):
                    x = x + term  # into the residual stream
                    term = None
                if torch.jit.is_scripting():
                    if self.rope is not None:
                        raise RuntimeError('TorchScript cannot build RoPE tables: trace the model with fx instead')
                    x = blk(x, term, hw)
                else:
                    x = self._run_block(blk, x, term, hw, self.block_rope(i, blk.window_size, hw),
                                        None if weight_casts is None else weight_casts[i])
        return x, pe

    def block_rope(self, i: int, window_size: int, hw: Tuple[int, int]) -> Optional[torch.Tensor]:
        """Block ``i``'s RoPE table (None without RoPE) for the grid its attention sees: ``hw``, or one window
        (RoPE is relative, so a window's own positions give what its grid positions would)."""
        if self.rope is None:
            return None
        return rope_embed(self.rope, i, (window_size, window_size) if window_size else hw)

    def _run_block(self, blk: nn.Module, x: torch.Tensor, pe: Optional[torch.Tensor], hw: Tuple[int, int],
                   rope: Optional[torch.Tensor], weight_casts: Optional[dict]) -> torch.Tensor:
        """One block, with activation checkpointing in training or the cached weight casts in inference."""
        if self.with_cp and self.training and x.requires_grad:
            return cp.checkpoint(blk, x, pe, hw, rope, use_reentrant=False)
        if weight_casts is not None:
            return functional_call(blk, weight_casts, (x, pe, hw, rope))
        return blk(x, pe, hw, rope)

    def forward_tokens(self, img: torch.Tensor, indices: Optional[List[int]] = None, stop: Optional[int] = None
                       ) -> Tuple[torch.Tensor, List[torch.Tensor], Tuple[int, int]]:
        """Run ``blocks[:stop]`` (all by default): the tokens ``[B, T, C]`` after the last block run
        (before ``norm``), those after each block in ``indices`` (in block order), and the grid."""
        x, hw = self.embed(img)
        x, pe = self.join_input_pe(x, hw)
        x = self.pos_drop(x)
        intermediates: List[torch.Tensor] = []
        take: List[int] = [] if indices is None else list(indices)
        take.sort()
        start = 0
        for i in take:  # run the blocks up to each requested output in one call
            if i >= start:  # (a repeated index is taken once)
                x, pe = self.forward_blocks(x, hw, pe, start, i + 1)
                intermediates.append(x)
                start = i + 1
        x, _ = self.forward_blocks(x, hw, pe, start, stop)
        return x, intermediates, hw

    def tokens_to_map(self, tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Tokens ``[B, (1 +) h*w, C]`` to the patch feature map ``[B, C, h, w]``."""
        patch_tokens = tokens[:, self.num_prefix_tokens:] if self.cls_token is not None else tokens
        return patch_tokens.reshape(-1, hw[0], hw[1], self.embed_dims).permute(0, 3, 1, 2).contiguous()

    def forward(self, img: torch.Tensor) -> tuple:
        """``[B, in_channels, H, W]`` to one ``[B, C, h, w]`` map per out index (in block order)."""
        _, intermediates, hw = self.forward_tokens(img, list(self.out_indices), stop=max(self.out_indices) + 1)
        if self.num_layers - 1 in self.out_indices:  # the last block's output goes through the final norm
            intermediates[-1] = self.norm(intermediates[-1])
        outs = []
        for tokens in intermediates:
            feature_map = self.tokens_to_map(tokens, hw)
            outs.append([feature_map, tokens[:, 0]] if self.output_cls_token else feature_map)
        return tuple(outs)
