"""Train and evaluate one small LaPE classifier with a plain PyTorch loop (no Runner: speed)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.optim import param_groups_weight_decay
from torch.optim import lr_scheduler

from lape_mm.engine import NO_WEIGHT_DECAY
from lape_mm.models.classifiers import LaPEVisionTransformer
from .data import Split


@dataclass(frozen=True)
class Recipe:
    """A ViT-Lite-sized model and its schedule: 32x32 input in 8x8 patches (a 4x4 grid, as
    ViT-Lite-7/8), 4 blocks of width 64, AdamW with warm-up and cosine decay, label smoothing."""
    embed_dims: int = 64
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: float = 2.
    patch_size: int = 8
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 3  # a fraction of an epoch for short fine-tunes
    label_smoothing: float = 0.1


def build_model(recipe: Recipe, pe_join: str, pe_type: str, in_channels: int, img_size: int,
                num_classes: int, rope: str | None = None) -> LaPEVisionTransformer:
    return LaPEVisionTransformer(
        num_classes=num_classes, embed_dims=recipe.embed_dims, num_layers=recipe.num_layers,
        num_heads=recipe.num_heads, mlp_ratio=recipe.mlp_ratio, patch_size=recipe.patch_size,
        img_size=img_size, in_channels=in_channels, pe_join=pe_join, pe_type=pe_type,
        rope=rope)


@torch.no_grad()
def match_pe_scale(model: LaPEVisionTransformer, images: torch.Tensor) -> float:
    """Re-initialise the learnable PE at the std of the patch tokens of ``images`` (DeiT's 0.02 is
    far below it); returns that std. A control: is a gap to LaPE only a matter of PE scale?"""
    std = model.patch_embed(images).std().item()
    trunc_normal_(model.pos_embed, std=std, a=-2 * std, b=2 * std)
    return std


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    correct = sum((model(images[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum().item()
                  for i in range(0, len(labels), batch_size))
    return 100. * correct / len(labels)


def train_and_evaluate(model: nn.Module, data: Split, recipe: Recipe, seed: int) -> float:
    """AdamW + warm-up/cosine + label smoothing from scratch; returns test accuracy (%)."""
    train_x, train_y, test_x, test_y = data
    generator = torch.Generator().manual_seed(seed)
    groups = param_groups_weight_decay(model, recipe.weight_decay, no_weight_decay_list=NO_WEIGHT_DECAY)
    optimizer = torch.optim.AdamW(groups, lr=recipe.lr)
    steps_per_epoch = math.ceil(len(train_y) / recipe.batch_size)
    warmup, total = max(1, round(recipe.warmup_epochs * steps_per_epoch)), recipe.epochs * steps_per_epoch
    scheduler = lr_scheduler.SequentialLR(  # linear warm-up, then cosine decay to zero
        optimizer, [lr_scheduler.LinearLR(optimizer, 1 / warmup, total_iters=warmup - 1),
                    lr_scheduler.CosineAnnealingLR(optimizer, max(1, total - warmup))], milestones=[warmup])
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    for _ in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(train_y), generator=generator)
        for i in range(0, len(order), recipe.batch_size):
            index = order[i:i + recipe.batch_size]
            loss = criterion(model(train_x[index]), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return accuracy(model, test_x, test_y)
