"""A tiny instance-segmentation dataset in COCO's exact layout whose classes need absolute position.

``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/000000000001.jpg`` as
mmdet's ``CocoDataset`` reads them (polygon masks, xywh boxes, ``iscrowd=0``, COCO category ids
and names). Every object lies wholly in the top or the bottom half of its image; its class
depends on its colour *and* on that half (a red shape is a 'person' at the top, a 'car' at the
bottom). Shapes are drawn from the same polygons that are stored, so masks are exact.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .draw import jitter, textured_background
from .folder import mark

OBJECT_COLOURS = [(220, 40, 40), (50, 80, 230)]
# COCO (id, name) for each colour in the (top half, bottom half) of the image.
OBJECT_CLASSES = [((1, 'person'), (3, 'car')), ((16, 'bird'), (18, 'dog'))]
CATEGORIES = sorted(cat for pair in OBJECT_CLASSES for cat in pair)
CLASSES = tuple(name for _, name in CATEGORIES)  # mmdet ``metainfo=dict(classes=CLASSES)``
SPLITS = ('train2017', 'val2017')


def _polygon(rng: np.random.Generator, box: tuple[int, int, int, int]) -> list[float]:
    """A rectangle or an ellipse (24-gon) inside ``box`` (x0, y0, x1, y1), as COCO's flat [x, y, ...]."""
    x0, y0, x1, y1 = box
    if rng.random() < 0.5:
        points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    else:
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        points = list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))
    return [round(float(v), 2) for point in points for v in point]


def _area(polygon: list[float]) -> float:
    x, y = np.asarray(polygon[0::2]), np.asarray(polygon[1::2])
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def _place(rng: np.random.Generator, h: int, w: int, taken: list[tuple]) -> tuple[tuple, bool] | None:
    """A box wholly inside one half that overlaps no box in ``taken``; None after 20 tries."""
    for _ in range(20):
        top = bool(rng.random() < 0.5)
        bh, bw = int(rng.integers(h // 8, h // 2 - 2)), int(rng.integers(w // 8, w // 3))
        y0 = int(rng.integers(0, h // 2 - bh)) + (0 if top else h - h // 2)
        x0 = int(rng.integers(0, w - bw))
        box = (x0, y0, x0 + bw, y0 + bh)
        if all(box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1] for b in taken):
            return box, top
    return None


def make_sample(rng: np.random.Generator, h: int, w: int) -> tuple[Image.Image, list[dict]]:
    """One RGB image and its objects as COCO annotation dicts (without ids)."""
    image = Image.fromarray(textured_background(rng, h, w).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    objects, boxes = [], []
    for _ in range(rng.integers(1, 5)):
        placed = _place(rng, h, w, boxes)
        if placed is None:
            break
        box, top = placed
        boxes.append(box)
        colour_idx = int(rng.integers(len(OBJECT_COLOURS)))
        polygon = _polygon(rng, box)
        colour = jitter(rng, OBJECT_COLOURS[colour_idx])
        draw.polygon(polygon, fill=colour)
        xs, ys = polygon[0::2], polygon[1::2]
        objects.append(dict(
            category_id=OBJECT_CLASSES[colour_idx][0 if top else 1][0], segmentation=[polygon],
            area=_area(polygon), bbox=[min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], iscrowd=0))
    return image.filter(ImageFilter.GaussianBlur(0.6)), objects


def make_tiny_coco(out: str | Path, num_train: int = 200, num_val: int = 40, seed: int = 0,
                   sizes: tuple[int, ...] = (160, 192, 224, 256)) -> Path:
    """Write the dataset under ``out`` (mmdet's ``data/coco`` layout) and return ``out``."""
    root = Path(out)
    mark(root, 'coco')
    rng = np.random.default_rng(seed)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    image_id = ann_id = 0
    for split, count in zip(SPLITS, (num_train, num_val)):
        (root / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for _ in range(count):
            image_id += 1
            h, w = int(rng.choice(sizes)), int(rng.choice(sizes))
            image, objects = make_sample(rng, h, w)
            file_name = f'{image_id:012d}.jpg'
            image.save(root / split / file_name, quality=95)
            images.append(dict(id=image_id, file_name=file_name, height=h, width=w))
            for obj in objects:
                ann_id += 1
                annotations.append(dict(id=ann_id, image_id=image_id, **obj))
        coco = dict(images=images, annotations=annotations,
                    categories=[dict(id=i, name=name, supercategory='shape') for i, name in CATEGORIES])
        (root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(coco))
    return root
