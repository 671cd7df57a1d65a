"""Single-image semantic segmentation through mmseg's MMSegInferencer, saved as a colour mask."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def save_colour_mask(label: np.ndarray, palette: list, path: str | Path) -> None:
    """Write a class-id map ``[H, W]`` as a palette PNG: viewers show the class colours,
    while the pixel values stay the class ids for programs that read it back."""
    if label.max(initial=0) >= 256:
        raise ValueError(f'a palette PNG holds at most 256 classes, got class id {label.max()}')
    mask = Image.fromarray(label.astype(np.uint8), mode='P')
    mask.putpalette([c for colour in palette for c in colour][:768])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    mask.save(path)


def segment_image(config: str, checkpoint: str, image: str, out_png: str | Path,
                  device: str | None = None) -> np.ndarray:
    """Segment ``image`` with a config + checkpoint, write the colour mask, return class ids."""
    import lape_mm  # noqa: F401  (registers the backbone and the safe checkpoint globals)
    from mmseg.apis import MMSegInferencer
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    inferencer = MMSegInferencer(model=config, weights=checkpoint, device=device)
    result = inferencer(image, return_datasamples=True)
    label = result.pred_sem_seg.data[0].cpu().numpy()
    save_colour_mask(label, inferencer.model.dataset_meta['palette'], out_png)
    return label
