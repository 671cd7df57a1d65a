"""Single-image inference through mmseg's / mmdet's inferencers, loading the checkpoint strictly.

Stock inferencers load weights with ``strict=False``: a checkpoint of another model only logs its mismatched
keys and then predicts with random weights."""
from pathlib import Path

import numpy as np
from mmdet.apis import DetInferencer
from mmseg.apis import MMSegInferencer
from PIL import Image

from .datasets import read_image
from .engine import check_checkpoint_fits


class StrictWeights:
    """Mixin for an mmengine ``BaseInferencer``: refuse weights that do not fit the model exactly."""

    def __init__(self, model: str, weights: str, **kwargs):
        self.weights_path = weights
        super().__init__(model=model, weights=weights, **kwargs)

    def _load_weights_to_model(self, model, checkpoint: dict | None, cfg) -> None:
        if checkpoint is not None:
            check_checkpoint_fits(model, checkpoint, self.weights_path, 'infer')
        super()._load_weights_to_model(model, checkpoint, cfg)


class StrictSegInferencer(StrictWeights, MMSegInferencer):
    """:class:`MMSegInferencer` with strict weights."""


class StrictDetInferencer(StrictWeights, DetInferencer):
    """:class:`DetInferencer` with strict weights."""


def save_colour_mask(label: np.ndarray, palette: list, path: str | Path) -> None:
    """Write a class-id map ``[H, W]`` as a palette PNG: viewers show the class colours, while the
    pixel values stay the class ids for programs that read it back."""
    if label.max(initial=0) >= 256:
        raise ValueError(f'a palette PNG holds at most 256 classes, got class id {label.max()}')
    mask = Image.fromarray(label.astype(np.uint8), mode='P')
    mask.putpalette([c for colour in palette for c in colour][:768])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    mask.save(path)


def segment_image(config: str, checkpoint: str, image: str, out_png: str | Path,
                  device: str | None = None) -> np.ndarray:
    """Segment ``image`` with a config + checkpoint, write the colour mask, return class ids.
    ``device=None`` is mmengine's choice (CUDA where available)."""
    read_image(image)  # a bad file fails here, by name, not inside the pipeline
    inferencer = StrictSegInferencer(model=config, weights=checkpoint, device=device)
    label = inferencer(image, return_datasamples=True).pred_sem_seg.data[0].cpu().numpy()
    save_colour_mask(label, inferencer.model.dataset_meta['palette'], out_png)
    return label


def detect_image(config: str, checkpoint: str, image: str, out_image: str | Path,
                 device: str | None = None, score_thr: float = 0.3) -> dict:
    """Detect objects in ``image`` with an mmdet config + checkpoint, write the image with the
    detections above ``score_thr`` drawn on it, and return mmdet's prediction dict."""
    import mmcv
    read_image(image)
    inferencer = StrictDetInferencer(model=config, weights=checkpoint, device=device)
    result = inferencer(image, return_vis=True, no_save_vis=True, pred_score_thr=score_thr)
    mmcv.imwrite(mmcv.rgb2bgr(result['visualization'][0]), str(out_image))
    return result['predictions'][0]
