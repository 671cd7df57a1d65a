"""LaPEViTAdapter: ViT-Adapter (Chen et al., ICLR 2023) around a LaPEViT, for mmdet 3.x and mmseg 1.x."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.registry import MODELS
from timm.layers import trunc_normal_

from ..arguments import ConfigError, check_choice, check_int
from ..layers.adapter_modules import Injector, InteractionBlock, SpatialPriorModule, deform_inputs, split_pyramid
from ..layers.ms_deform_attn import MSDeformAttn
from .lape_vit import LaPEViT

ADAPTER_STRIDES = (4, 8, 16, 32)
VIT_FEATURES = ('last', 'stages')


@MODELS.register_module()
class LaPEViTAdapter(LaPEViT):
    """ViT-Adapter whose plain ViT is a :class:`LaPEViT`, so every ``pe_join`` and ``pe_type`` works in it.

    A spatial prior CNN (``spm``) gives a stride-8/16/32 pyramid. Around each stage of ViT blocks
    (``interaction_indexes``: first and last block of each stage) an injector adds the pyramid into
    the ViT tokens and extractors write the tokens back into the pyramid. Returns four maps
    ``[B, C, H/s, W/s]`` for s = 4, 8, 16, 32; H and W must be multiples of 32.

    The PE enters where LaPEViT puts it: 'add' once after the patch embedding (the original
    ViT-Adapter); 'lape' inside every block, ``attn(norm1(x) + p_l)``, so the injectors and
    extractors see tokens without PE. Window attention pads q/k/v with zeros, as the original does.

    Takes LaPEViT's arguments (``img_size`` is the PE grid the ViT was pretrained on) and the
    original ViTAdapter's under its names; ``layer_scale`` adds its per-block ``gamma1``/``gamma2``
    (timm's LayerScale, initialised to 1), ``adapter_norm_cfg`` is the norm of ``spm`` and of the
    four outputs (the original's SyncBN). With ``add_vit_feature`` the ViT tokens, resized, are
    added to the four maps: the last stage's to all four (``vit_features='last'``, the original's
    detection backbone) or stage i's to map i (``'stages'``, its segmentation backbone).
    """

    size_divisor = ADAPTER_STRIDES[-1]  # H and W must be multiples of the coarsest output stride
    # Modules a plain ViT checkpoint lacks (they start fresh); an adapter checkpoint has them all.
    # With layer_scale, every block's ls1/ls2 join them (see __init__).
    extra_prefixes = ('spm.', 'interactions.', 'level_embed', 'up.', 'norm1.', 'norm2.', 'norm3.', 'norm4.')

    def __init__(self,
                 conv_inplane: int = 64,
                 n_points: int = 4,
                 deform_num_heads: int = 6,
                 init_values: float = 0.,
                 interaction_indexes: Sequence[Sequence[int]] = ((0, 2), (3, 5), (6, 8), (9, 11)),
                 with_cffn: bool = True,
                 cffn_ratio: float = 0.25,
                 deform_ratio: float = 1.0,
                 add_vit_feature: bool = True,
                 vit_features: str = 'last',
                 use_extra_extractor: bool = True,
                 layer_scale: bool = False,
                 adapter_norm_cfg: dict | None = None,
                 **vit_kwargs):
        for name, value in (('conv_inplane', conv_inplane), ('n_points', n_points),
                            ('deform_num_heads', deform_num_heads)):
            check_int(name, value)
        check_choice('vit_features', vit_features, VIT_FEATURES)
        fixed = {'with_cls_token', 'output_cls_token', 'final_norm', 'out_indices', 'window_pad'} & set(vit_kwargs)
        if fixed:
            raise ConfigError(f'LaPEViTAdapter sets {sorted(fixed)} itself (patch tokens only, no final norm, '
                              f'four pyramid outputs, zero-padded q/k/v windows): remove them from the config')
        super().__init__(with_cls_token=False, final_norm=False, window_pad='qkv',
                         layer_scale_init=1. if layer_scale else None, **vit_kwargs)
        self.interaction_indexes = self._check_stages(interaction_indexes)
        if add_vit_feature and vit_features == 'stages' and len(self.interaction_indexes) != len(ADAPTER_STRIDES):
            raise ConfigError(f"vit_features='stages' adds stage i's tokens to output i: it needs "
                              f'{len(ADAPTER_STRIDES)} interaction_indexes, got {len(self.interaction_indexes)}')
        self.add_vit_feature, self.vit_features = add_vit_feature, vit_features
        if layer_scale:
            self.extra_prefixes += tuple(f'blocks.{i}.ls{j}.' for i in range(self.num_layers) for j in (1, 2))
        dim = self.embed_dims
        adapter_norm_cfg = adapter_norm_cfg or dict(type='SyncBN', requires_grad=True)
        norm_layer = lambda dim: build_norm_layer(self.norm_cfg, dim)[1]  # noqa: E731  (the ViT's LayerNorm)
        self.level_embed = nn.Parameter(torch.zeros(3, dim))
        self.spm = SpatialPriorModule(conv_inplane, dim, adapter_norm_cfg)
        self.interactions = nn.ModuleList(
            InteractionBlock(dim, deform_num_heads, n_points, deform_ratio, norm_layer, init_values,
                             with_cffn, cffn_ratio, drop=0., drop_path=vit_kwargs.get('drop_path_rate', 0.),
                             extra_extractor=use_extra_extractor and i == len(self.interaction_indexes) - 1,
                             with_cp=self.with_cp)
            for i in range(len(self.interaction_indexes)))
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.norm1, self.norm2, self.norm3, self.norm4 = (build_norm_layer(adapter_norm_cfg, dim)[1] for _ in range(4))
        self._init_adapter()

    def _check_stages(self, stages: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
        stages = tuple((int(s[0]), int(s[-1])) for s in stages)
        expected_start = 0
        for start, end in stages:
            if start != expected_start or end < start:
                break
            expected_start = end + 1
        if not stages or expected_start != self.num_layers:
            raise ConfigError(f'interaction_indexes {[list(s) for s in stages]} must split blocks 0..'
                              f'{self.num_layers - 1} into consecutive [first, last] stages, '
                              f'e.g. [[0, 2], [3, 5], [6, 8], [9, 11]] for 12 blocks')
        return stages

    def _init_params(self) -> None:
        """LaPEViT's init (which resets every module), then the original's for the adapter's
        modules; LaPEViT's constructor runs this before they exist."""
        super()._init_params()
        if 'interactions' in self._modules:
            self._init_adapter()

    @torch.no_grad()
    def _init_adapter(self) -> None:
        """The original's init: trunc-normal(0.02) linears, He-normal (fan-out) convs, unit norms,
        Deformable DETR's init in every deformable attention, N(0, 1) level embeddings, injector
        gammas at ``init_values``."""
        adapter = [*self.spm.modules(), *self.interactions.modules(), self.up]
        for m in adapter:
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2. / fan_out))
                nn.init.zeros_(m.bias) if m.bias is not None else None
        for m in adapter:  # a second pass: it overrides the linears' init above
            if isinstance(m, (MSDeformAttn, Injector)):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``[B, 3, H, W]`` to ``[B, C, H/s, W/s]`` maps for s = 4, 8, 16, 32."""
        H, W = img.shape[-2:]
        if img.shape[0] == 0:
            raise ValueError(f'LaPEViTAdapter got an empty batch {list(img.shape)}: pass at least one image')
        if H % self.size_divisor or W % self.size_divisor:
            raise ValueError(f'LaPEViTAdapter needs H and W that are multiples of {self.size_divisor}, got {H}x{W}: '
                             f'pad the input (pad_size_divisor={self.size_divisor} in mmdet, size_divisor='
                             f'{self.size_divisor} in mmseg)')
        c1, *pyramid = self.spm(img)
        c = torch.cat([level + embed for level, embed in zip(pyramid, self.level_embed)], dim=1)
        x, hw = self.embed(img)
        x, pe = self.join_input_pe(x, hw)
        x = self.pos_drop(x)
        injector_inputs, extractor_inputs = deform_inputs(hw, img.device)
        stage_tokens = []
        for interaction, (first, last) in zip(self.interactions, self.interaction_indexes):
            x = interaction.inject(x, c, injector_inputs)
            x, pe = self.forward_blocks(x, hw, pe, first, last + 1)
            c = interaction.extract(c, x, extractor_inputs, hw)
            stage_tokens.append(x)
        c2, c3, c4 = split_pyramid(c, hw)
        maps = [self.up(c2) + c1, c2, c3, c4]
        if self.add_vit_feature:
            tokens = stage_tokens if self.vit_features == 'stages' else [x] * len(maps)
            maps = [m + self._resized_map(t, hw, 16 / s) for m, t, s in zip(maps, tokens, ADAPTER_STRIDES)]
        return tuple(norm(m) for norm, m in zip((self.norm1, self.norm2, self.norm3, self.norm4), maps))

    def _resized_map(self, tokens: torch.Tensor, hw: tuple[int, int], scale: float) -> torch.Tensor:
        """ViT tokens ``[B, h*w, C]`` as an NCHW map, bilinearly scaled by ``scale``."""
        x = tokens.transpose(1, 2).reshape(tokens.shape[0], self.embed_dims, *hw)
        return x if scale == 1 else F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False)
