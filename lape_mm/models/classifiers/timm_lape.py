"""LaPE image classifiers registered in timm: ``timm.create_model('lape_vit_tiny_patch16_224')``, with timm's
ViT contract (``forward_features`` / ``forward_head``, ``forward_intermediates`` and ``features_only=True``,
fx tracing) and strict pretrained loading through :func:`checkpoint_filter_fn`."""

from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from ...checkpoint import safe_load, to_lape_state_dict
from ..arguments import check_choice
from ..backbones import LaPEViT, fit_state_dict
from ..backbones.checkpoint_fit import PRETRAINED_ADVICE, check_fits

GLOBAL_POOLS = ('token', 'avg', '')


class LaPEVisionTransformer(LaPEViT):
    """LaPEViT with a classification head; its keys are exactly the LaPE authors' DeiT layout."""

    def __init__(self, num_classes: int = 1000, global_pool: str = 'token', **kwargs):
        if 'in_chans' in kwargs:  # timm's name for it
            kwargs['in_channels'] = kwargs.pop('in_chans')
        kwargs.setdefault('pad_to_patch', False)  # as timm's ViT: image sides must be multiples of the patch
        super().__init__(**kwargs)
        self._check_pool(global_pool)
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dims
        self.feature_info = [dict(module=f'blocks.{i}', num_chs=self.embed_dims, reduction=self.patch_size)
                             for i in range(self.num_layers)]
        self.reset_classifier(num_classes)

    def _check_pool(self, global_pool: str) -> None:
        check_choice('global_pool', global_pool, GLOBAL_POOLS)
        if global_pool == 'token' and self.cls_token is None:
            raise ValueError("global_pool='token' needs with_cls_token=True")

    def forward_features(self, img: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` to normalized tokens ``[B, 1 + N, C]``."""
        return self.norm(self.forward_tokens(img)[0])

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'token':
            tokens = tokens[:, 0]
        elif self.global_pool == 'avg':
            tokens = tokens[:, self.num_prefix_tokens if self.cls_token is not None else 0:].mean(dim=1)
        return tokens if pre_logits else self.head(tokens)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(img))

    def forward_intermediates(self, img: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              return_prefix_tokens: bool = False, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = 'NCHW', intermediates_only: bool = False
                              ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """timm's feature API: the tokens after the blocks in ``indices`` (last n for an int), as
        ``[B, C, h, w]`` maps ('NCHW') or ``[B, N, C]`` ('NLC'), and the final normalized tokens."""
        if output_fmt not in ('NCHW', 'NLC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        taken, max_index = feature_take_indices(self.num_layers, indices)
        x, intermediates, hw = self.forward_tokens(img, taken,
                                                   stop=max_index + 1 if stop_early or intermediates_only else None)
        if norm:
            intermediates = [self.norm(t) for t in intermediates]
        prefix = self.num_prefix_tokens if self.cls_token is not None else 0
        prefix_tokens = [t[:, :prefix] for t in intermediates]
        if output_fmt == 'NCHW':
            intermediates = [self.tokens_to_map(t, hw) for t in intermediates]
        else:
            intermediates = [t[:, prefix:] for t in intermediates]
        if return_prefix_tokens:
            intermediates = list(zip(intermediates, prefix_tokens))
        return intermediates if intermediates_only else (self.norm(x), intermediates)

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the blocks after the last of ``indices`` (and the norm and head, as asked)."""
        taken, max_index = feature_take_indices(self.num_layers, indices)
        self.blocks = self.blocks[:max_index + 1]
        self.num_layers = max_index + 1
        self.out_indices = tuple(i for i in self.out_indices if i <= max_index) or (max_index,)
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return taken

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.with_cp = enable

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            self._check_pool(global_pool)
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dims, num_classes) if num_classes else nn.Identity()
        for param in self.head.parameters():  # a fresh head starts at zero: uniform logits
            nn.init.zeros_(param)


def checkpoint_filter_fn(state_dict: dict, model: LaPEVisionTransformer) -> dict:
    """timm's pretrained hook: any supported format in, this model's keys out, strictly. Only the classifier
    may be absent or of another size (a new ``num_classes``: the head starts fresh)."""
    native, fmt = to_lape_state_dict(state_dict)
    head = native.get('head.weight')
    keep_head = bool(model.num_classes) and head is not None and head.shape[0] == model.num_classes
    fitted, report = fit_state_dict(native, model, keep_head=keep_head)
    own_head = {k: v for k, v in model.state_dict().items() if k.startswith('head.')}
    if own_head and not keep_head:
        print_log(f'pretrained file has no {model.num_classes}-class head: the head starts fresh', logger='current')
        fitted.update(own_head)
    check_fits(model, fitted, f'pretrained file ({fmt} format)', PRETRAINED_ADVICE)
    report.log('pretrained file')
    return fitted


default_cfgs = generate_default_cfgs({f'lape_vit_{arch}_patch16_224': dict(
    url='', num_classes=1000, input_size=(3, 224, 224), pool_size=None, crop_pct=.875, interpolation='bicubic',
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), first_conv='patch_embed.proj', classifier='head',
    license='apache-2.0') for arch in ('tiny', 'small', 'base')})


def _create(variant: str, arch: str, pretrained: bool, **kwargs) -> LaPEVisionTransformer:
    # No hub weights exist: pass pretrained=True with pretrained_cfg_overlay=dict(file=PATH).
    file = (kwargs.get('pretrained_cfg_overlay') or {}).get('file')
    if pretrained and file:
        safe_load(file)  # weights-only, and a bad file is a named CheckpointError, before timm reads it
    feature_cfg = dict(out_indices=kwargs.pop('out_indices', 3), feature_cls='getter')
    return build_model_with_cfg(LaPEVisionTransformer, variant, pretrained, arch=arch, feature_cfg=feature_cfg,
                                pretrained_filter_fn=checkpoint_filter_fn, pretrained_strict=True, **kwargs)


@register_model
def lape_vit_tiny_patch16_224(pretrained: bool = False, **kwargs) -> LaPEVisionTransformer:
    return _create('lape_vit_tiny_patch16_224', 'tiny', pretrained, **kwargs)


@register_model
def lape_vit_small_patch16_224(pretrained: bool = False, **kwargs) -> LaPEVisionTransformer:
    return _create('lape_vit_small_patch16_224', 'small', pretrained, **kwargs)


@register_model
def lape_vit_base_patch16_224(pretrained: bool = False, **kwargs) -> LaPEVisionTransformer:
    return _create('lape_vit_base_patch16_224', 'base', pretrained, **kwargs)
