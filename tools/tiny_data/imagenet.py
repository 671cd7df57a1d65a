"""A tiny dataset in ImageNet's folder layout, for pretraining runs on a CPU.

``train/n0000000K/n0000000K_I.JPEG`` and ``val/n0000000K/ILSVRC2012_val_I.JPEG``: the layout
mmpretrain's ``ImageNet`` / ``CustomDataset`` and torchvision's ``ImageFolder`` read. Each class
is one (shape, colour) pair drawn at a random place and size on a noisy background, so a
classifier can learn it from a few hundred images, whatever crop the augmentation takes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .draw import jitter
from .folder import mark

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 200, 40), (200, 60, 220)]
SHAPES = ('ellipse', 'rectangle')
NUM_CLASSES = len(COLOURS) * len(SHAPES)


def class_names(num_classes: int = NUM_CLASSES) -> list[str]:
    """WordNet-id-like folder names, sorted as the class indices are."""
    return [f'n{i:08d}' for i in range(num_classes)]


def make_image(rng: np.random.Generator, label: int, h: int, w: int) -> Image.Image:
    """One RGB image of class ``label``: its shape in its colour, 40-80% of the short side."""
    background = rng.integers(90, 170, size=3) + rng.normal(0, 20, size=(h, w, 3))
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    size = int(min(h, w) * rng.uniform(0.4, 0.8))
    y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    colour = jitter(rng, COLOURS[label % len(COLOURS)])
    draw = ImageDraw.Draw(image)
    getattr(draw, SHAPES[label // len(COLOURS)])([x0, y0, x0 + size, y0 + size], fill=colour)
    return image


def make_tiny_imagenet(out: str | Path, train_per_class: int = 20, val_per_class: int = 5, seed: int = 0,
                       num_classes: int = NUM_CLASSES, sizes: tuple[int, ...] = (96, 128, 160)) -> Path:
    """Write ``out/{train,val}/CLASS/*.JPEG`` and return ``out``."""
    if not 1 <= num_classes <= NUM_CLASSES:
        raise ValueError(f'num_classes must be in 1..{NUM_CLASSES}, got {num_classes}')
    root = Path(out)
    mark(root, 'imagenet')
    rng = np.random.default_rng(seed)
    for split, per_class in (('train', train_per_class), ('val', val_per_class)):
        for label, wnid in enumerate(class_names(num_classes)):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = int(rng.choice(sizes)), int(rng.choice(sizes))
                name = f'{wnid}_{i + 1}' if split == 'train' else f'ILSVRC2012_val_{label * per_class + i + 1:08d}'
                make_image(rng, label, h, w).save(folder / f'{name}.JPEG', quality=95)
    return root
