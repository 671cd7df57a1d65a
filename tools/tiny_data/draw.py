"""What the tiny data sets draw with: a textured background and colours jittered per object."""
from __future__ import annotations

import numpy as np


def textured_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A [H, W, 3] float image: one random grey-ish colour, 8x8-pixel blotches and pixel noise."""
    base = rng.integers(90, 170, size=3)
    noise = rng.normal(0, 18, size=(h // 8 + 1, w // 8 + 1, 3))
    noise = np.kron(noise, np.ones((8, 8, 1)))[:h, :w]
    return np.clip(base + noise + rng.normal(0, 6, size=(h, w, 3)), 0, 255)


def jitter(rng: np.random.Generator, colour: tuple[int, int, int]) -> tuple[int, ...]:
    """``colour`` with each channel moved by N(0, 15), clipped to 0..255."""
    return tuple(int(np.clip(c + rng.normal(0, 15), 0, 255)) for c in colour)
