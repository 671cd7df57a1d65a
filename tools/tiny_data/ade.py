"""A tiny dataset in ADE20K's exact layout whose labels need both content and absolute position.

``ADEChallengeData2016/images/{training,validation}/ADE_*.jpg`` and
``annotations/{training,validation}/ADE_*.png`` with 0 = ignore and classes 1..150 (mmseg's
``ADE20KDataset`` with ``reduce_zero_label=True``). The background has one texture everywhere,
but is class 1 ('wall') in the top half and 4 ('floor') in the bottom half; each object's class
depends on its colour and on which half its centre lies in. Without position information a
model can get the objects' colour right but not the background or the half.
"""
from __future__ import annotations

import os.path as osp
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .draw import jitter, textured_background
from .folder import mark

WALL, FLOOR = 1, 4
OBJECT_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 200, 40)]
# ADE20K ids for (colour, top half) and (colour, bottom half): bed, tree, person, table, ...; the last
# one is 150 ('flag'), the highest ADE20K id, so that label checks and models see the full 0..150 range.
OBJECT_CLASSES = [(8, 5), (13, 16), (18, 20), (23, 150)]
SPLITS = {'training': 'train', 'validation': 'val'}


def make_sample(rng: np.random.Generator, h: int, w: int) -> tuple[Image.Image, Image.Image]:
    """One RGB image and its ADE-style label map (uint8, 0 = ignore)."""
    image = Image.fromarray(textured_background(rng, h, w).astype(np.uint8))
    label = np.full((h, w), WALL, np.uint8)
    label[h // 2:] = FLOOR
    label_img = Image.fromarray(label)
    draw, draw_label = ImageDraw.Draw(image), ImageDraw.Draw(label_img)
    for _ in range(rng.integers(2, 6)):
        colour_idx = int(rng.integers(len(OBJECT_COLOURS)))
        bh, bw = int(rng.integers(h // 8, h // 3)), int(rng.integers(w // 8, w // 3))
        y0, x0 = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
        box = [x0, y0, x0 + bw, y0 + bh]
        top = (y0 + bh / 2) < h / 2
        cls = OBJECT_CLASSES[colour_idx][0 if top else 1]
        colour = jitter(rng, OBJECT_COLOURS[colour_idx])
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape_label = draw_label.ellipse if shape == draw.ellipse else draw_label.rectangle
        shape(box, fill=colour)
        shape_label(box, fill=0)  # a 1-pixel unlabeled rim, as ADE20K has at object borders
        shape_label([box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1], fill=cls)
    return image.filter(ImageFilter.GaussianBlur(0.6)), label_img


def make_tiny_ade(out: str | Path, num_train: int = 200, num_val: int = 40, seed: int = 0,
                  sizes: tuple[int, ...] = (128, 160, 192)) -> Path:
    """Write the dataset under ``out/ADEChallengeData2016`` and return that folder."""
    root = Path(out) / 'ADEChallengeData2016'
    mark(out, 'ade')
    rng = np.random.default_rng(seed)
    for split, count in (('training', num_train), ('validation', num_val)):
        (root / 'images' / split).mkdir(parents=True, exist_ok=True)
        (root / 'annotations' / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            h, w = int(rng.choice(sizes)), int(rng.choice(sizes))
            image, label = make_sample(rng, h, w)
            name = f'ADE_{SPLITS[split]}_{i + 1:08d}'
            image.save(root / 'images' / split / f'{name}.jpg', quality=95)
            label.save(root / 'annotations' / split / f'{name}.png')
    return root


def is_tiny_ade(root: str | Path) -> bool:
    return osp.isdir(osp.join(root, 'images', 'training')) and osp.isdir(osp.join(root, 'annotations', 'validation'))
