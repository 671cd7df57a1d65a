"""LaPE image classifiers registered in timm: ``timm.create_model('lape_vit_tiny_patch16_224')``."""
from __future__ import annotations

import torch
import torch.nn as nn
from mmengine.registry import MODELS
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..backbones import LaPEViT


@MODELS.register_module()
class LaPEVisionTransformer(LaPEViT):
    """LaPEViT with a classification head; its keys are exactly the LaPE authors' DeiT layout."""

    def __init__(self, num_classes: int = 1000, global_pool: str = 'token', **kwargs):
        if 'in_chans' in kwargs:  # timm's name for it
            kwargs['in_channels'] = kwargs.pop('in_chans')
        super().__init__(**kwargs)
        if global_pool not in ('token', 'avg'):
            raise ValueError(f"unknown global_pool={global_pool!r}; choose 'token' or 'avg'")
        if global_pool == 'token' and not self.with_cls_token:
            raise ValueError("global_pool='token' needs with_cls_token=True")
        self.global_pool = global_pool
        self.num_classes = num_classes
        self.num_features = self.embed_dims
        self.head = nn.Linear(self.embed_dims, num_classes) if num_classes else nn.Identity()
        if num_classes:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward_features(self, img: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` to normalized tokens ``[B, 1 + N, C]``."""
        return self.forward_tokens(img)[0]

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'token':
            pooled = tokens[:, 0]
        else:
            pooled = tokens[:, self.num_prefix_tokens if self.with_cls_token else 0:].mean(dim=1)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(img))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.global_pool = global_pool or self.global_pool
        self.head = nn.Linear(self.embed_dims, num_classes) if num_classes else nn.Identity()


def checkpoint_filter_fn(state_dict: dict, model: LaPEVisionTransformer) -> dict:
    """timm's pretrained hook: any supported format in, this model's keys out."""
    from ...checkpoint import adapt_state_dict, to_lape_state_dict  # checkpoint imports models
    native, _ = to_lape_state_dict(state_dict)
    keep_head = model.num_classes and native.get('head.weight', torch.empty(0)).shape[:1] == (model.num_classes,)
    return adapt_state_dict(native, model, keep_head=bool(keep_head))


def _cfg(**kwargs) -> dict:
    return dict(url='', num_classes=1000, input_size=(3, 224, 224), crop_pct=.875, interpolation='bicubic',
                mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), first_conv='patch_embed.proj',
                classifier='head', license='apache-2.0', **kwargs)


default_cfgs = generate_default_cfgs({f'lape_vit_{arch}_patch16_224': _cfg() for arch in ('tiny', 'small', 'base')})


def _create(variant: str, arch: str, pretrained: bool, **kwargs) -> LaPEVisionTransformer:
    # No hub weights exist: pass pretrained=True with pretrained_cfg_overlay=dict(file=PATH).
    return build_model_with_cfg(LaPEVisionTransformer, variant, pretrained, arch=arch,
                                pretrained_filter_fn=checkpoint_filter_fn, pretrained_strict=False, **kwargs)


@register_model
def lape_vit_tiny_patch16_224(pretrained: bool = False, **kwargs) -> LaPEVisionTransformer:
    return _create('lape_vit_tiny_patch16_224', 'tiny', pretrained, **kwargs)


@register_model
def lape_vit_small_patch16_224(pretrained: bool = False, **kwargs) -> LaPEVisionTransformer:
    return _create('lape_vit_small_patch16_224', 'small', pretrained, **kwargs)


@register_model
def lape_vit_base_patch16_224(pretrained: bool = False, **kwargs) -> LaPEVisionTransformer:
    return _create('lape_vit_base_patch16_224', 'base', pretrained, **kwargs)
