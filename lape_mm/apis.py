"""Single-image inference through mmseg's / mmdet's inferencers, loading the checkpoint strictly.

Stock inferencers load weights with ``strict=False``: a checkpoint of another model only logs its mismatched
keys and then predicts with random weights. Results are written atomically (:mod:`lape_mm.fileio`)."""
from pathlib import Path

import numpy as np
from mmdet.apis import DetInferencer
from mmseg.apis import MMSegInferencer
from PIL import Image

from .checkpoint import load_weights_only
from .datasets import read_image
from .engine import check_checkpoint_fits
from .fileio import atomic_write


class StrictWeights:
    """Mixin for an mmengine ``BaseInferencer``: the weights are read weights-only, from any place and format
    :func:`~lape_mm.checkpoint.load_weights_only` reads, and refused unless they fit the model exactly."""

    def __init__(self, model: str, weights: str, **kwargs):
        self.weights_path, self.checkpoint = weights, load_weights_only(weights)
        super().__init__(model=model, weights=None, **kwargs)  # builds the model, then loads self.checkpoint

    def _load_weights_to_model(self, model, checkpoint: dict | None, cfg) -> None:
        checkpoint, self.checkpoint = self.checkpoint, None  # (not kept alive beside the model)
        check_checkpoint_fits(model, checkpoint, self.weights_path, 'infer')
        super()._load_weights_to_model(model, checkpoint, cfg)


class StrictSegInferencer(StrictWeights, MMSegInferencer):
    """:class:`MMSegInferencer` with strict weights."""


class StrictDetInferencer(StrictWeights, DetInferencer):
    """:class:`DetInferencer` with strict weights."""


def output_format(out: str | Path, image: str | Path | None = None) -> str:
    """PIL's format for writing ``out``, named by its extension; ValueError for no or an unknown
    extension, or for ``out`` being the input ``image`` (the result would replace the photo)."""
    out = Path(out)
    if image is not None and out.exists() and Path(image).exists() and out.samefile(image):
        raise ValueError(f'the output {out} is the input image: writing it would replace the photo; '
                         f'give another output file')
    if not out.suffix:
        raise ValueError(f'the output {out} has no extension: name it .png (pixel values are the class ids) '
                         f'or .jpg/.webp (colours only)')
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt not in Image.SAVE:
        raise ValueError(f'cannot write {out.suffix} images; name the output .png, .jpg or .webp')
    return fmt


def save_image(image: Image.Image, path: str | Path) -> None:
    """Write ``image`` in the format ``path``'s extension names, atomically (an existing file stays whole
    until the new one is)."""
    path = Path(path)
    fmt = output_format(path)
    with atomic_write(path) as tmp, open(tmp, 'wb') as f:
        image.save(f, format=fmt)


def save_colour_mask(label: np.ndarray, palette: list, path: str | Path) -> None:
    """Write a class-id map ``[H, W]``: as a palette PNG for a ``.png`` path (viewers show the class
    colours, the pixel values stay the class ids for programs that read it back), else (``.jpg``,
    ``.webp``: lossy, and without palettes) as its colour rendering, whose values are not class ids."""
    if label.max(initial=0) >= 256:
        raise ValueError(f'a palette image holds at most 256 classes, got class id {label.max()}')
    mask = Image.fromarray(label.astype(np.uint8), mode='P')
    mask.putpalette([c for colour in palette for c in colour][:768])
    save_image(mask if output_format(path) == 'PNG' else mask.convert('RGB'), path)


def segment_image(config: str, checkpoint: str, image: str, out_png: str | Path,
                  device: str | None = None) -> np.ndarray:
    """Segment ``image`` with a config + checkpoint, write the colour mask (see :func:`save_colour_mask`),
    return class ids. ``device=None`` is mmengine's choice (CUDA where available)."""
    output_format(out_png, image)
    read_image(image)  # a bad file fails here, by name, not inside the pipeline
    inferencer = StrictSegInferencer(model=config, weights=checkpoint, device=device)
    label = inferencer(image, return_datasamples=True).pred_sem_seg.data[0].cpu().numpy()
    save_colour_mask(label, inferencer.model.dataset_meta['palette'], out_png)
    return label


def detect_image(config: str, checkpoint: str, image: str, out_image: str | Path,
                 device: str | None = None, score_thr: float = 0.3) -> dict:
    """Detect objects in ``image`` with an mmdet config + checkpoint, write the image with the
    detections above ``score_thr`` drawn on it, and return mmdet's prediction dict."""
    output_format(out_image, image)
    read_image(image)
    inferencer = StrictDetInferencer(model=config, weights=checkpoint, device=device)
    result = inferencer(image, return_vis=True, no_save_vis=True, pred_score_thr=score_thr)
    save_image(Image.fromarray(result['visualization'][0]), out_image)
    return result['predictions'][0]
