"""The study's two tasks as in-memory tensors: ``(train_x, train_y, test_x, test_y)``.

``digits``: scikit-learn's 1797 bundled 8x8 handwritten digits, bilinearly upsampled to 32x32,
one channel, a fixed stratified 75/25 split. ``position``: a synthetic task in which content
alone cannot tell the class: a red square among three squares of other colours, labelled with
the cell of a 3x3 grid that holds its centre. A transformer without position information sees
the same set of patches wherever the square is, so it is at chance (1/9).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
TARGET = (0.9, 0.1, 0.1)
DISTRACTORS = ((0.1, 0.8, 0.1), (0.1, 0.2, 0.9), (0.9, 0.8, 0.1))


def _standardize(train_x: torch.Tensor, test_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train_x.mean(), train_x.std()
    return (train_x - mean) / std, (test_x - mean) / std


def load_digits_32(seed: int = 0, size: int = 32) -> Split:
    """Digits ``[N, 1, size, size]`` (standardized) and labels 0..9."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.
    images = F.interpolate(images, size=(size, size), mode='bilinear', align_corners=False)
    labels = torch.tensor(digits.target)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=digits.target,
                                           random_state=seed)
    train_x, test_x = _standardize(images[train_idx], images[test_idx])
    return train_x, labels[train_idx], test_x, labels[test_idx]


def _position_samples(rng: np.random.Generator, count: int, size: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.clip(rng.normal(0.5, 0.12, size=(count, 3, size, size)), 0, 1).astype(np.float32)
    labels = np.empty(count, dtype=np.int64)
    for i in range(count):
        # Distractors first, the target last: it is always fully visible.
        for colour in (*DISTRACTORS, TARGET):
            side = int(rng.integers(4, 7))
            y, x = rng.integers(0, size - side + 1, size=2)
            jitter = rng.normal(0, 0.05, size=3)
            images[i, :, y:y + side, x:x + side] = (np.array(colour) + jitter)[:, None, None]
        centre_y, centre_x = y + side / 2, x + side / 2
        labels[i] = int(centre_y * grid // size) * grid + int(centre_x * grid // size)
    return images, labels


def make_position_task(num_train: int = 3000, num_test: int = 1000, seed: int = 0, size: int = 32,
                       grid: int = 3) -> Split:
    """Images ``[N, 3, size, size]`` (standardized) and labels 0..grid*grid-1 (row-major cell)."""
    rng = np.random.default_rng(seed)
    train_x, train_y = _position_samples(rng, num_train, size, grid)
    test_x, test_y = _position_samples(rng, num_test, size, grid)
    train_x, test_x = _standardize(torch.from_numpy(train_x), torch.from_numpy(test_x))
    return train_x, torch.from_numpy(train_y), test_x, torch.from_numpy(test_y)


TASKS = {'digits': load_digits_32, 'position': make_position_task}
