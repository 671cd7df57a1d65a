"""mmseg's and mmdet's inferencers, loading the checkpoint strictly.

Stock inferencers load weights with ``strict=False``: a checkpoint of another model only logs
its mismatched keys and then predicts with random weights.
"""
from __future__ import annotations

from mmdet.apis import DetInferencer
from mmseg.apis import MMSegInferencer

from ..engine.checkpoint_fit import check_checkpoint_fits


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
