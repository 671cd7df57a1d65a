"""Synthetic batches for whole segmentors/detectors: the metainfo their forward reads."""
from __future__ import annotations

import torch


def dummy_data_samples(scope: str, batch: int, hw: tuple[int, int], num_classes: int | None = None) -> list:
    """One data sample per image of size ``hw``. For mmseg with ``num_classes``, also a random
    ``gt_sem_seg`` ``[1, H, W]`` so that ``model.loss`` runs (detectors: metainfo only)."""
    meta = dict(img_shape=hw, ori_shape=hw, pad_shape=hw, batch_input_shape=hw, scale_factor=(1., 1.))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        return [DetDataSample(metainfo=meta) for _ in range(batch)]
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = [SegDataSample(metainfo=meta) for _ in range(batch)]
    if num_classes:
        for sample in samples:
            sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, *hw)))
    return samples
