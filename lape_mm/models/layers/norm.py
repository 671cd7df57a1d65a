"""LayerNorm over the channels of NCHW maps: ViTDet's "LN" in its pyramid and RoI heads."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS


@MODELS.register_module('LN2d')
class LayerNorm2d(nn.LayerNorm):
    """Normalizes each position of ``[B, C, H, W]`` over ``C``; ``norm_cfg=dict(type='LN2d')``.

    The output is a contiguous NCHW tensor, not a permuted view: mmcv's RoIAlign reads raw NCHW
    memory and silently returns wrong features for a channels-last view (timm's LayerNorm2d
    returns one).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2).contiguous()
