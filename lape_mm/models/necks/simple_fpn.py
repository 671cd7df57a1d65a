"""ViTDet's simple feature pyramid: one stride-16 ViT map to a multi-scale pyramid for detectors."""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS

SCALE_FACTORS = (4.0, 2.0, 1.0, 0.5)


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """Simple feature pyramid (ViTDet, Li et al. 2022), built from the backbone's last map only.

    Each ``scale_factors`` entry makes one level from the ``[B, in_channels, H, W]`` input: 4.0: two 2x2
    stride-2 deconvolutions with norm + GELU between; 2.0: one deconvolution; 1.0: the map; 0.5: 2x2 max
    pooling; then a 1x1 and a 3x3 conv, each with norm, to ``out_channels``. Levels up to ``num_outs``
    subsample the previous one by 2 (ViTDet's ``LastLevelMaxPool``, for the RPN's stride-64 anchors).
    Returns ``num_outs`` maps ``[B, out_channels, H * s, W * s]``, finest first."""

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = SCALE_FACTORS,
                 num_outs: int = 5,
                 norm_cfg: dict | None = None,
                 init_cfg: dict | list | None = None):
        super().__init__(init_cfg=init_cfg)
        if not scale_factors or any(s not in SCALE_FACTORS for s in scale_factors) \
                or list(scale_factors) != sorted(set(scale_factors), reverse=True):
            raise ValueError(f'scale_factors {list(scale_factors)} unsupported; use distinct entries of '
                             f'{SCALE_FACTORS} in this order (finest level first)')
        if num_outs < len(scale_factors):
            raise ValueError(f'num_outs={num_outs} is fewer than the {len(scale_factors)} scale_factors; '
                             f'set num_outs >= {len(scale_factors)}')
        # mmpretrain's channel LayerNorm; the scope prefix finds it from mmdet's and mmseg's registries.
        norm_cfg = norm_cfg or dict(type='mmpretrain.LN2d', eps=1e-6)
        self.in_channels, self.out_channels, self.num_outs = in_channels, out_channels, num_outs
        self.rescales, self.convs = nn.ModuleList(), nn.ModuleList()
        for scale in scale_factors:
            rescale, channels = self._rescale(scale, in_channels, norm_cfg)
            self.rescales.append(rescale)
            self.convs.append(nn.Sequential(
                ConvModule(channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None),
                ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=None)))

    @staticmethod
    def _rescale(scale: float, channels: int, norm_cfg: dict) -> tuple[nn.Module, int]:
        """The resampling module for one level and the channels it outputs (ViTDet's choice)."""
        if scale == 4.0:
            return nn.Sequential(nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
                                 build_norm_layer(norm_cfg, channels // 2)[1], nn.GELU(),
                                 nn.ConvTranspose2d(channels // 2, channels // 4, 2, stride=2)), channels // 4
        if scale == 2.0:
            return nn.ConvTranspose2d(channels, channels // 2, 2, stride=2), channels // 2
        if scale == 1.0:
            return nn.Identity(), channels
        return nn.MaxPool2d(2, stride=2), channels

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``inputs``: the backbone's maps; the last one, ``[B, in_channels, H, W]``, is used."""
        x = inputs[-1]
        if x.shape[1] != self.in_channels:
            raise ValueError(f'SimpleFPN expects {self.in_channels} input channels, got {x.shape[1]}; '
                             f'set neck.in_channels to the backbone width')
        outs = [conv(rescale(x)) for rescale, conv in zip(self.rescales, self.convs)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
