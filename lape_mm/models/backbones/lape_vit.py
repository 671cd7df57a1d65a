"""LaPEViT: a plain ViT backbone whose position embedding is joined per layer (LaPE, ICCV 2023)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from timm.layers import PatchEmbed, trunc_normal_
from torch.func import functional_call
from torch.nn.modules.utils import _pair

from ..layers import PE_TYPES, AutocastWeightCache, LaPEBlock, build_fixed_pos_embed, resize_pos_embed

PE_JOINS = ('lape', 'lape_independent', 'add', 'share', 'unshare')
ARCH_ZOO = {
    'tiny': dict(embed_dims=192, num_layers=12, num_heads=3),
    'small': dict(embed_dims=384, num_layers=12, num_heads=6),
    'base': dict(embed_dims=768, num_layers=12, num_heads=12),
    'large': dict(embed_dims=1024, num_layers=24, num_heads=16),
}


def _choice(name: str, value, allowed: Sequence) -> None:
    if value not in allowed:
        raise ValueError(f'unknown {name}={value!r}; choose one of {", ".join(map(repr, allowed))}')


@MODELS.register_module()
class LaPEViT(BaseModule):
    """Vision transformer with layer-adaptive position embedding, for mmseg and mmdet.

    ``pe_join`` decides where the PE enters (see LAPE.md): 'lape' adds ``p_l = pe_norm_l(p_{l-1})``
    to every block's normalized attention input; 'lape_independent' adds ``pe_norm_l(pe)``;
    'add' is the standard ViT (PE added once to the input tokens); 'share' adds the same PE to
    the residual stream before every block; 'unshare' adds a separate learnable PE per block.

    The PE is stored for the ``img_size`` grid (one cls slot first, as in DeiT) and bicubically
    resized to each input's grid. Returns a tuple of ``[B, C, H/p, W/p]`` maps, one per
    ``out_indices`` entry (each ``[map, cls_token]`` when ``output_cls_token``), like mmseg's
    ``VisionTransformer``. ``window_size > 0`` turns every block not in ``global_attn_indexes``
    into windowed attention (ViTDet), which needs ``with_cls_token=False``.

    Inference (eval mode, no autograd) keeps two caches: the per-layer PEs of each input grid
    and, under autocast, the blocks' linear weights in the autocast dtype (see
    :class:`AutocastWeightCache`; ``autocast_weight_cache=False`` trades its ~14% bf16 speed-up
    for ~170 MB (ViT-B) held between calls; a call's peak is the same either way). Both are
    keyed on the tensors' versions, so a weight update invalidates them, and ``train()`` (so
    ``eval()`` too) drops them.
    """

    num_prefix_tokens = 1  # the cls slot is always stored, so DeiT/timm/mmseg checkpoints fit

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
                 pe_cache_size: int = 4,
                 autocast_weight_cache: bool = True,
                 init_cfg: dict | None = None):
        super().__init__(init_cfg=init_cfg)
        _choice('arch', arch, tuple(ARCH_ZOO))
        _choice('pe_join', pe_join, PE_JOINS)
        _choice('pe_type', pe_type, PE_TYPES)
        if pe_join == 'unshare' and pe_type != 'learnable':
            raise ValueError(f"pe_join='unshare' learns one PE per block and needs pe_type='learnable', "
                             f'got pe_type={pe_type!r}')
        if output_cls_token and not with_cls_token:
            raise ValueError('output_cls_token=True needs with_cls_token=True')
        if window_size and with_cls_token:
            raise ValueError('window attention works on patch tokens only: set with_cls_token=False '
                             'when window_size > 0')
        preset = ARCH_ZOO[arch]
        self.embed_dims = embed_dims or preset['embed_dims']
        self.num_layers = num_layers or preset['num_layers']
        num_heads = num_heads or preset['num_heads']
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.img_size = _pair(img_size)
        self.patch_grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.pe_join, self.pe_type = pe_join, pe_type
        self.with_cls_token, self.output_cls_token = with_cls_token, output_cls_token
        self.final_norm, self.with_cp = final_norm, with_cp
        self.pad_to_patch = pad_to_patch
        self.frozen_stages = frozen_stages
        self.out_indices = self._check_out_indices(out_indices)
        for i in global_attn_indexes:
            if not 0 <= i < self.num_layers:
                raise ValueError(f'global_attn_indexes entry {i} is out of range for {self.num_layers} layers')

        norm_cfg = norm_cfg or dict(type='LN', eps=1e-6)
        norm_layer = lambda dim: build_norm_layer(norm_cfg, dim)[1]  # noqa: E731
        self.patch_embed = PatchEmbed(img_size=None, patch_size=patch_size, in_chans=in_channels,
                                      embed_dim=self.embed_dims, output_fmt='NCHW', strict_img_size=False,
                                      dynamic_img_pad=pad_to_patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        self.pos_embed = self._build_pos_embed()
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, self.num_layers).tolist()
        self.blocks = nn.ModuleList(
            LaPEBlock(self.embed_dims, num_heads, norm_layer, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                      drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[i],
                      with_pe_norm=pe_join.startswith('lape') and pe_type != 'none',
                      window_size=0 if i in global_attn_indexes else window_size)
            for i in range(self.num_layers))
        self.norm = norm_layer(self.embed_dims) if final_norm else nn.Identity()
        # Per-resolution PEs of every block, reused in eval mode (see _block_pos_embeds).
        self._pe_cache: OrderedDict = OrderedDict()
        self.pe_cache_size = pe_cache_size
        self._weight_casts = AutocastWeightCache() if autocast_weight_cache else None
        self._init_params()
        self._freeze_stages()

    # ------------------------------------------------------------------ construction
    def _check_out_indices(self, out_indices) -> tuple[int, ...]:
        indices = (out_indices,) if isinstance(out_indices, int) else tuple(out_indices)
        valid = range(-self.num_layers, self.num_layers)
        bad = [i for i in indices if i not in valid]
        if bad or not indices:
            raise ValueError(f'out_indices {bad or indices} out of range: {self.num_layers} layers allow '
                             f'0..{self.num_layers - 1} (or negative from the end)')
        return tuple(i % self.num_layers for i in indices)

    def _build_pos_embed(self) -> nn.Parameter | torch.Tensor | None:
        slots = self.num_prefix_tokens + self.patch_grid[0] * self.patch_grid[1]
        if self.pe_type == 'none':
            return None
        if self.pe_type == 'learnable':
            copies = self.num_layers if self.pe_join == 'unshare' else 1
            return nn.Parameter(torch.zeros(copies, slots, self.embed_dims))
        fixed = build_fixed_pos_embed(self.pe_type, self.patch_grid, self.embed_dims, self.num_prefix_tokens)
        self.register_buffer('_fixed_pos_embed', fixed, persistent=False)  # derived, never saved
        return self._fixed_pos_embed

    def _init_params(self) -> None:
        """DeiT/timm initialisation: trunc-normal(0.02) PE and Linear weights, zero biases."""
        if isinstance(self.pos_embed, nn.Parameter):
            trunc_normal_(self.pos_embed, std=.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias) if m.bias is not None else None

    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type='Pretrained', checkpoint=...)`` in any supported format."""
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            from ...checkpoint import load_pretrained  # late import: checkpoint imports models
            load_pretrained(self, self.init_cfg['checkpoint'], prefix=self.init_cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()

    def _freeze_stages(self) -> None:
        """Freeze the embeddings (stage 0) and the first ``frozen_stages`` blocks."""
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed, *self.blocks[:self.frozen_stages]]
        for module in frozen:
            module.eval()
            module.requires_grad_(False)
        self.cls_token.requires_grad_(False)
        if isinstance(self.pos_embed, nn.Parameter):
            self.pos_embed.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        self._pe_cache.clear()
        if self._weight_casts is not None:
            self._weight_casts.clear()
        return self

    # ------------------------------------------------------------------ forward
    def _embed(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image ``[B, in_channels, H, W]`` to tokens ``[B, (1 +) h*w, C]`` and the grid ``(h, w)``."""
        if img.dim() != 4 or img.shape[1] != self.in_channels:
            raise ValueError(f'expected images [B, {self.in_channels}, H, W], got {list(img.shape)}; '
                             f'set in_channels to match the input')
        H, W = img.shape[-2:]
        if not self.pad_to_patch and (H % self.patch_size or W % self.patch_size):
            raise ValueError(f'input size {H}x{W} is not a multiple of patch_size={self.patch_size}; '
                             f'resize or pad the image (e.g. size_divisor={self.patch_size} in the data '
                             f'preprocessor) or set pad_to_patch=True')
        x = self.patch_embed(img)
        hw = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # a view: the concatenation (or contiguous) is the one copy
        if self.with_cls_token:
            return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1), hw
        return x.contiguous(), hw

    def _inference_caches_usable(self) -> bool:
        """Eval mode without autograd, and not traced, compiled or exported (which must see the ops)."""
        return not (self.training or torch.is_grad_enabled() or torch.jit.is_tracing()
                    or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())

    def _block_pos_embeds(self, hw: tuple[int, int], use_cache: bool = False):
        """PE terms for a token grid: ``(input_pe, residual_pes, attention_pes)``.

        ``input_pe`` is added once before block 0; ``residual_pes[l]`` to the residual stream
        before block l; ``attention_pes[l]`` to block l's normalized attention input. Each PE has
        batch size 1, so this costs O(N*C) per layer whatever the batch. With ``use_cache``
        (inference) the result is cached per grid; the key holds the PE parameters' versions, so
        an optimizer step or ``load_state_dict`` invalidates it.
        """
        nones = [None] * self.num_layers
        if self.pos_embed is None:
            return None, nones, nones
        key = (hw, self.pos_embed.device, self.pos_embed.dtype, self._pe_param_versions()) if use_cache else None
        if key in self._pe_cache:
            self._pe_cache.move_to_end(key)
            return self._pe_cache[key]
        pe = resize_pos_embed(self.pos_embed, hw, self.patch_grid, self.num_prefix_tokens)
        if not self.with_cls_token:
            pe = pe[:, self.num_prefix_tokens:]
        if self.pe_join == 'add':
            terms = pe, nones, nones
        elif self.pe_join == 'share':
            terms = None, [pe] * self.num_layers, nones
        elif self.pe_join == 'unshare':
            terms = None, list(pe.split(1)), nones
        elif self.pe_join == 'lape_independent':
            terms = None, nones, [blk.pe_norm(pe) for blk in self.blocks]
        else:  # 'lape': progressive, p_l = LN_l(p_{l-1})
            attention_pes = []
            for blk in self.blocks:
                pe = blk.pe_norm(pe)
                attention_pes.append(pe)
            terms = None, nones, attention_pes
        if use_cache:
            self._pe_cache[key] = terms
            while len(self._pe_cache) > self.pe_cache_size:
                self._pe_cache.popitem(last=False)
        return terms

    def _pe_param_versions(self) -> tuple[int, ...]:
        params = [self.pos_embed] + [p for blk in self.blocks if blk.pe_norm is not None
                                     for p in blk.pe_norm.parameters()]
        return tuple(p._version for p in params)

    def forward_tokens(self, img: torch.Tensor, out_indices: Sequence[int] = ()
                       ) -> tuple[torch.Tensor, list[torch.Tensor], tuple[int, int]]:
        """Run the transformer. Returns the final tokens ``[B, T, C]`` (after ``norm``), the
        tokens after each block in ``out_indices`` (the last one normalized), and the grid."""
        x, hw = self._embed(img)
        inference = self._inference_caches_usable()
        input_pe, residual_pes, attention_pes = self._block_pos_embeds(hw, inference)
        device_type = x.device.type
        weight_casts = None
        if inference and self._weight_casts is not None and torch.is_autocast_enabled(device_type):
            weight_casts = self._weight_casts.get(self.blocks, torch.get_autocast_dtype(device_type))
        if input_pe is not None:
            x = x + input_pe
        x = self.pos_drop(x)
        intermediates = []
        last = self.num_layers - 1
        for i, blk in enumerate(self.blocks):
            if residual_pes[i] is not None:
                x = x + residual_pes[i]
            if self.with_cp and self.training and x.requires_grad:
                x = cp.checkpoint(blk, x, attention_pes[i], hw, use_reentrant=False)
            elif weight_casts is not None:
                x = functional_call(blk, weight_casts[i], (x, attention_pes[i], hw))
            else:
                x = blk(x, attention_pes[i], hw)
            if i == last:
                x = self.norm(x)
            if i in out_indices:
                intermediates.append(x)
        return x, intermediates, hw

    def forward(self, img: torch.Tensor) -> tuple:
        """``[B, in_channels, H, W]`` to a tuple of ``[B, C, h, w]`` maps, one per out index."""
        _, intermediates, (h, w) = self.forward_tokens(img, self.out_indices)
        outs = []
        for tokens in intermediates:
            patch_tokens = tokens[:, self.num_prefix_tokens:] if self.with_cls_token else tokens
            feature_map = patch_tokens.reshape(-1, h, w, self.embed_dims).permute(0, 3, 1, 2).contiguous()
            outs.append([feature_map, tokens[:, 0]] if self.output_cls_token else feature_map)
        return tuple(outs)
