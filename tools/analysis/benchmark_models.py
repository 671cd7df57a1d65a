"""The models the benchmark compares, each as ``images [B, 3, H, W] -> tuple of outputs`` plus a loss.

Backbones: LaPEViT with pe_join 'lape' and 'add', with RoPE alone (axial, mixed) and RoPE + lape,
mmseg's ``VisionTransformer`` and timm's ``VisionTransformer`` (through ``forward_intermediates``), all
of one width/depth and returning NCHW maps at the same ``out_indices``; and ViT-Adapter
(``LaPEViTAdapter``, 'lape' and 'add') in its COCO setting, whose four maps are at strides 4 to 32.
Segmentors: whole UPerNets built from configs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from lape_mm.models.backbones import ARCH_ZOO, LaPEViT, LaPEViTAdapter
from .build import build_model, load_config
from .flops import TensorForward
from .inputs import dummy_data_samples

# The LaPEViT backbones by name: their arguments beside arch, depth, size and out_indices.
LAPE_VITS = {'lape': {}, 'add': dict(pe_join='add'), 'lape-cp': dict(with_cp=True),
             'rope': dict(pe_type='none', rope='axial'), 'rope-mixed': dict(pe_type='none', rope='mixed'),
             'lape-rope': dict(rope='axial')}
BACKBONES = ('lape', 'add', 'timm', 'mmseg', 'lape-cp', 'rope', 'rope-mixed', 'lape-rope', 'adapter-lape',
             'adapter-add')
LossFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def output_mean_loss(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """A scalar that depends on every output, so backward runs through the whole model."""
    return sum(out.float().mean() for out in model(images))


@dataclass
class Candidate:
    """One benchmarked model: ``model(images)`` gives its outputs, ``loss(model, images)`` a training loss."""

    name: str
    model: nn.Module
    loss: LossFn = field(default=output_mean_loss)


class TimmIntermediates(nn.Module):
    """timm's ViT feature API as a backbone: NCHW maps after the blocks in ``indices``."""

    def __init__(self, vit: nn.Module, indices: tuple[int, ...]):
        super().__init__()
        self.vit = vit
        self.indices = list(indices)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.vit.forward_intermediates(images, indices=self.indices, intermediates_only=True))


def default_out_indices(depth: int) -> tuple[int, ...]:
    """Four evenly spaced blocks, as mmseg's ViT UPerNet uses: (2, 5, 8, 11) for 12 blocks."""
    return tuple(sorted({max(0, (i + 1) * depth // 4 - 1) for i in range(4)}))


def build_backbone(name: str, arch: str, depth: int | None, size: tuple[int, int]) -> nn.Module:
    """One of :data:`BACKBONES` at ``arch`` width (``depth`` blocks), PE grid for ``size``."""
    if name not in BACKBONES:
        raise ValueError(f'unknown benchmark model {name!r}; choose from {", ".join(BACKBONES)}')
    dims = dict(ARCH_ZOO[arch])
    depth = depth or dims['num_layers']
    out_indices = default_out_indices(depth)
    if name in LAPE_VITS:
        return LaPEViT(arch=arch, num_layers=depth, img_size=size, out_indices=out_indices, **LAPE_VITS[name])
    if name.startswith('adapter-'):  # the COCO config's adapter: windows of 14, global attention at out_indices
        stages = [[first, last] for first, last in zip((0,) + tuple(i + 1 for i in out_indices[:-1]), out_indices)]
        return LaPEViTAdapter(arch=arch, num_layers=depth, img_size=size, pe_join=name.split('-')[1],
                              window_size=14, global_attn_indexes=out_indices, layer_scale=True,
                              interaction_indexes=stages, adapter_norm_cfg=dict(type='BN'))
    if name == 'timm':
        from timm.models.vision_transformer import VisionTransformer
        vit = VisionTransformer(img_size=size, patch_size=16, embed_dim=dims['embed_dims'], depth=depth,
                                num_heads=dims['num_heads'], num_classes=0)
        return TimmIntermediates(vit, out_indices)
    from mmseg.models.backbones import VisionTransformer
    return VisionTransformer(img_size=size, patch_size=16, embed_dims=dims['embed_dims'], num_layers=depth,
                             num_heads=dims['num_heads'], out_indices=out_indices, final_norm=True,
                             norm_cfg=dict(type='LN', eps=1e-6), interpolate_mode='bicubic')


class BenchmarkSegmentor(TensorForward):
    """A segmentor as ``images -> logits`` whose BatchNorms stay in eval mode when training on
    batch 1: pyramid pooling's 1x1 map has a single value per channel, without batch statistics
    (multi-GPU training gets them from SyncBN). The work per step is the same."""

    def __init__(self, model: nn.Module, batch: int):
        super().__init__(model)
        self.frozen_bn = batch == 1

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen_bn:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def build_segmentor(name: str, config: str, depth: int | None, batch: int, size: tuple[int, int]) -> Candidate:
    """A whole segmentor from ``config`` (random weights, no drop path, so every model does the
    same work); its loss is the config's decode + auxiliary losses on random labels."""
    options = {'model.pretrained': None, 'model.backbone.init_cfg': None, 'model.backbone.drop_path_rate': 0.0}
    if depth:
        if depth < 4:
            raise ValueError(f'depth={depth}: UPerNet takes 4 feature maps from 4 different blocks; use depth >= 4')
        options.update({'model.backbone.num_layers': depth,
                        'model.backbone.out_indices': list(default_out_indices(depth))})
    cfg = load_config(config, options)
    segmentor = build_model(cfg)
    num_classes = segmentor.decode_head.num_classes
    samples = dummy_data_samples('mmseg', batch, size, num_classes)

    def seg_loss(model: BenchmarkSegmentor, images: torch.Tensor) -> torch.Tensor:
        for sample in samples:
            sample.gt_sem_seg.data = sample.gt_sem_seg.data.to(images.device)
        return model.model.parse_losses(model.model.loss(images, samples))[0]

    return Candidate(name, BenchmarkSegmentor(segmentor, batch), seg_loss)
