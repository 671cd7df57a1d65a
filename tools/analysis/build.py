"""Models for the analysis tools: a whole segmentor/detector from a config, or a LaPEViT backbone
from a config or from a checkpoint in any format :func:`lape_mm.models.backbones.load_pretrained` reads."""
from __future__ import annotations

import logging
import os.path as osp
import re

import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS

from lape_mm.checkpoint import CheckpointError, read_checkpoint, safe_load
from lape_mm.models.backbones import LaPEViT, fit_state_dict, load_fitted, pretrained_checkpoint
from lape_mm.models.layers import infer_grid
from ..launch import load_config

CONFIG_SUFFIXES = ('.py', '.json', '.yaml', '.yml')


def build_model(cfg: Config) -> nn.Module:
    """The config's model (segmentor, detector, or bare backbone), randomly initialised, with
    SyncBN as BN: analysis runs in one process, without a process group."""
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def backbone_from_config(path: str) -> LaPEViT:
    """The config's LaPEViT backbone, with its ``init_cfg`` checkpoint when that file exists."""
    cfg = load_config(path)
    backbone_cfg = cfg.model.get('backbone', cfg.model)
    if backbone_cfg.get('type') != 'LaPEViT':
        raise ValueError(f'{path}: the backbone is {backbone_cfg.get("type")!r}, not LaPEViT')
    backbone = MODELS.build(backbone_cfg)
    checkpoint = pretrained_checkpoint(backbone_cfg.get('init_cfg'))
    if checkpoint and osp.isfile(checkpoint):
        backbone.init_weights()
    elif checkpoint:
        print_log(f'{path}: init_cfg checkpoint {checkpoint} not found, the backbone is randomly initialised',
                  logger='current', level=logging.WARNING)
    return backbone


def backbone_from_checkpoint(path: str, pe_join: str | None = None) -> LaPEViT:
    """A LaPEViT shaped like the checkpoint's weights, with them loaded.

    Width, depth, patch size and PE grid come from the tensors; ``pe_join`` is 'lape' when the
    checkpoint has ``pe_norm`` layers, 'unshare' for one PE per block, otherwise 'add' (pass
    ``pe_join='lape_independent'`` or 'share' where the weights cannot tell).
    """
    state_dict, _, saved_grid = read_checkpoint(path)
    if state_dict.get('pos_embed') is None:
        raise ValueError(f'{path} has no learnable pos_embed; pass the config of a fixed-PE model instead')
    pos_embed, proj = state_dict['pos_embed'], state_dict['patch_embed.proj.weight']
    embed_dims, patch_size = proj.shape[0], proj.shape[-1]
    num_layers = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r'blocks\.(\d+)\.', k)))
    if pe_join is None:
        has_pe_norm = any('.pe_norm.' in k for k in state_dict)
        pe_join = 'lape' if has_pe_norm else 'unshare' if pos_embed.shape[0] > 1 else 'add'
    grid = saved_grid or infer_grid(pos_embed.shape[1] - LaPEViT.num_prefix_tokens)
    model = LaPEViT(embed_dims=embed_dims, num_layers=num_layers, num_heads=max(1, embed_dims // 64),
                    patch_size=patch_size, img_size=(grid[0] * patch_size, grid[1] * patch_size),
                    pe_join=pe_join)
    load_fitted(model, fit_state_dict(state_dict, model, saved_grid=grid)[0], source=path)
    return model


def load_backbone(source: str, pe_join: str | None = None) -> LaPEViT:
    """A LaPEViT from a config file (``.py``) or a checkpoint file (anything else)."""
    if source.endswith(CONFIG_SUFFIXES):
        return backbone_from_config(source)
    return backbone_from_checkpoint(source, pe_join)


def load_model_weights(model: nn.Module, path: str) -> None:
    """Load a whole-model checkpoint (e.g. one tools/train.py wrote) strictly, weights-only."""
    checkpoint = safe_load(path)
    state_dict = checkpoint.get('state_dict', checkpoint)
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f'{path} does not match the model: missing {result.missing_keys[:5]}, unexpected '
                              f'{result.unexpected_keys[:5]} (first 5 each). For a backbone-only checkpoint '
                              f'use --backbone-only; check that the config is the one the checkpoint was trained with')
