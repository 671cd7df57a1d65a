"""ViT-Adapter's modules (Chen et al., ICLR 2023): the spatial prior CNN and the injector/extractor
pair that exchanges features between the ViT tokens (stride 16) and a stride-8/16/32 pyramid.

Module and parameter names are the original's (but for ``ffn.dwconv``, one level flatter), so its
checkpoints load through ``lape_mm.checkpoint.convert_vit_adapter``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from timm.layers import DropPath

from .ms_deform_attn import MSDeformAttn

PYRAMID_STRIDES = (8, 16, 32)


class DeformInputs(NamedTuple):
    """What :class:`MSDeformAttn` needs besides query and features."""
    reference_points: torch.Tensor  # [1, Q, 1, 2]
    spatial_shapes: torch.Tensor  # [levels, 2] (h, w) of the attended maps
    level_start_index: torch.Tensor  # [levels]
    shapes: tuple[tuple[int, int], ...]  # spatial_shapes as ints: symbolic sizes when exported, not tensor data


def cell_centres(shapes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
    """Normalized (x, y) centres of every cell of each ``(h, w)`` grid, row-major, level after level:
    ``[1, sum(h*w), 1, 2]``, in fp32 as in the original."""
    centres = []
    for h, w in shapes:  # (arange + 0.5) is linspace(0.5, n - 0.5, n), and exports with a symbolic n
        ys, xs = torch.meshgrid((torch.arange(h, device=device) + 0.5) / h,
                                (torch.arange(w, device=device) + 0.5) / w, indexing='ij')
        centres.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], -1))
    return torch.cat(centres)[None, :, None]


def _deform_inputs(query_shapes: list[tuple[int, int]], feat_shapes: list[tuple[int, int]],
                   device: torch.device) -> DeformInputs:
    # Stacked from scalars: torch.as_tensor would bake torch.export's symbolic sizes into a constant.
    spatial_shapes = torch.stack([torch.stack([torch.scalar_tensor(n, dtype=torch.long, device=device) for n in hw])
                                  for hw in feat_shapes])
    level_start_index = torch.cat([spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]])
    return DeformInputs(cell_centres(query_shapes, device), spatial_shapes, level_start_index, tuple(feat_shapes))


def deform_inputs(hw: tuple[int, int], device: torch.device) -> tuple[DeformInputs, DeformInputs]:
    """For a stride-16 token grid ``hw``: the injectors' inputs (ViT tokens query the stride 8/16/32
    pyramid) and the extractors' (pyramid tokens query the ViT tokens)."""
    h, w = hw
    pyramid = [(h * 16 // s, w * 16 // s) for s in PYRAMID_STRIDES]
    return _deform_inputs([hw], pyramid, device), _deform_inputs(pyramid, [hw], device)


def split_pyramid(c: torch.Tensor, hw: tuple[int, int]) -> list[torch.Tensor]:
    """Pyramid tokens ``[B, 21/4 * h*w, C]`` to NCHW maps at strides 8, 16 and 32."""
    h, w = hw
    shapes = [(h * 16 // s, w * 16 // s) for s in PYRAMID_STRIDES]
    parts = c.split([a * b for a, b in shapes], dim=1)
    return [p.transpose(1, 2).reshape(c.shape[0], c.shape[2], a, b) for p, (a, b) in zip(parts, shapes)]


def _conv_norm_relu(in_channels: int, out_channels: int, stride: int, norm_cfg: dict) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            build_norm_layer(norm_cfg, out_channels)[1], nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """A ResNet-like stem giving the local spatial prior: ``c1`` ``[B, C, H/4, W/4]`` and the
    stride-8/16/32 maps as tokens ``[B, h*w, C]``."""

    def __init__(self, inplanes: int, embed_dim: int, norm_cfg: dict):
        super().__init__()
        self.stem = nn.Sequential(*_conv_norm_relu(3, inplanes, 2, norm_cfg),
                                  *_conv_norm_relu(inplanes, inplanes, 1, norm_cfg),
                                  *_conv_norm_relu(inplanes, inplanes, 1, norm_cfg),
                                  nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.conv2 = nn.Sequential(*_conv_norm_relu(inplanes, 2 * inplanes, 2, norm_cfg))
        self.conv3 = nn.Sequential(*_conv_norm_relu(2 * inplanes, 4 * inplanes, 2, norm_cfg))
        self.conv4 = nn.Sequential(*_conv_norm_relu(4 * inplanes, 4 * inplanes, 2, norm_cfg))
        self.fc1, self.fc2, self.fc3, self.fc4 = (nn.Conv2d(width * inplanes, embed_dim, 1) for width in (1, 2, 4, 4))

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c1 = self.stem(img)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        tokens = [fc(c).flatten(2).transpose(1, 2) for fc, c in ((self.fc2, c2), (self.fc3, c3), (self.fc4, c4))]
        return self.fc1(c1), *tokens


class ConvFFN(nn.Module):
    """MLP with a 3x3 depth-wise conv on each pyramid level between its two layers."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, 1, 1, groups=hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, c: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """``c``: pyramid tokens ``[B, N, C]`` of a stride-16 grid ``hw``."""
        maps = split_pyramid(self.fc1(c), hw)
        c = torch.cat([self.dwconv(m).flatten(2).transpose(1, 2) for m in maps], dim=1)
        return self.drop(self.fc2(self.drop(self.act(c))))


class Injector(nn.Module):
    """Pyramid to ViT: ``x + gamma * attn(norm(x), norm(c))`` over the three pyramid levels."""

    def __init__(self, dim: int, num_heads: int, num_points: int, ratio: float,
                 norm_layer: Callable[[int], nn.Module], init_values: float):
        super().__init__()
        self.query_norm, self.feat_norm = norm_layer(dim), norm_layer(dim)
        self.attn = MSDeformAttn(dim, num_heads, len(PYRAMID_STRIDES), num_points, ratio)
        self.init_values = init_values
        self.gamma = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``gamma = init_values``: at 0 the injector starts as identity."""
        nn.init.constant_(self.gamma, self.init_values)

    def forward(self, x: torch.Tensor, c: torch.Tensor, inputs: DeformInputs) -> torch.Tensor:
        return x + self.gamma * self.attn(self.query_norm(x), inputs.reference_points, self.feat_norm(c),
                                          inputs.spatial_shapes, inputs.level_start_index, inputs.shapes)


class Extractor(nn.Module):
    """ViT to pyramid: ``c + attn(norm(c), norm(x))``, then ``c + drop_path(ConvFFN(norm(c)))``."""

    def __init__(self, dim: int, num_heads: int, num_points: int, ratio: float,
                 norm_layer: Callable[[int], nn.Module], with_cffn: bool, cffn_ratio: float,
                 drop: float, drop_path: float):
        super().__init__()
        self.query_norm, self.feat_norm = norm_layer(dim), norm_layer(dim)
        self.attn = MSDeformAttn(dim, num_heads, 1, num_points, ratio)
        self.with_cffn = with_cffn
        if with_cffn:
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio), drop)
            self.ffn_norm = norm_layer(dim)
            self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, c: torch.Tensor, x: torch.Tensor, inputs: DeformInputs, hw: tuple[int, int]) -> torch.Tensor:
        c = c + self.attn(self.query_norm(c), inputs.reference_points, self.feat_norm(x),
                          inputs.spatial_shapes, inputs.level_start_index, inputs.shapes)
        if self.with_cffn:
            c = c + self.drop_path(self.ffn(self.ffn_norm(c), hw))
        return c


class InteractionBlock(nn.Module):
    """The adapter around one stage of ViT blocks: ``inject`` the pyramid into the ViT tokens before
    the stage, ``extract`` the result back into the pyramid after it (the last stage with two extra
    extractors)."""

    def __init__(self, dim: int, num_heads: int, num_points: int, ratio: float,
                 norm_layer: Callable[[int], nn.Module], init_values: float, with_cffn: bool,
                 cffn_ratio: float, drop: float, drop_path: float, extra_extractor: bool, with_cp: bool):
        super().__init__()
        self.with_cp = with_cp
        self.injector = Injector(dim, num_heads, num_points, ratio, norm_layer, init_values)
        extractor = lambda: Extractor(dim, num_heads, num_points, ratio, norm_layer, with_cffn,  # noqa: E731
                                      cffn_ratio, drop, drop_path)
        self.extractor = extractor()
        self.extra_extractors = nn.ModuleList([extractor(), extractor()]) if extra_extractor else None

    def _run(self, module: nn.Module, *args):
        if self.with_cp and self.training and torch.is_grad_enabled():
            return cp.checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def inject(self, x: torch.Tensor, c: torch.Tensor, inputs: DeformInputs) -> torch.Tensor:
        """The pyramid ``c`` ``[B, 21/4 * h*w, C]`` added into the ViT tokens ``x`` ``[B, h*w, C]``."""
        return self._run(self.injector, x, c, inputs)

    def extract(self, c: torch.Tensor, x: torch.Tensor, inputs: DeformInputs, hw: tuple[int, int]) -> torch.Tensor:
        """The stage's ViT tokens ``x`` written back into the pyramid ``c``."""
        for extractor in [self.extractor, *(self.extra_extractors or ())]:
            c = self._run(extractor, c, x, inputs, hw)
        return c
