"""Catch broken datasets before a run starts, with errors that say what is wrong and where.

mmseg and mmdet only fail once a bad sample is loaded, often hours in (or never, when a label
above the class count silently trains a wrong class). These checks read the dataset configs
that the Runner will build and fail fast.
"""
from __future__ import annotations

import json
import os.path as osp
from pathlib import Path

import numpy as np
from PIL import Image


class DatasetError(ValueError):
    """A dataset that cannot be trained or evaluated on as configured."""


def _stems(folder: Path, suffix: str) -> dict[str, Path]:
    return {str(p.relative_to(folder))[:-len(suffix)]: p for p in folder.rglob(f'*{suffix}')}


def check_seg_dataset(dataset: dict, num_classes: int, max_label_files: int = 500) -> None:
    """Paths exist, every image has an annotation and vice versa, and labels fit ``num_classes``.

    Label maps are read for up to ``max_label_files`` files (evenly spread) to keep the check
    quick on the full ADE20K (20k maps); the tiny datasets are checked completely.
    """
    root = Path(dataset.get('data_root') or '')
    prefix = dataset.get('data_prefix', {})
    img_dir, ann_dir = root / prefix.get('img_path', ''), root / prefix.get('seg_map_path', '')
    for name, folder in (('images', img_dir), ('annotations', ann_dir)):
        if not folder.is_dir():
            raise DatasetError(f'{name} folder {folder} does not exist; put the dataset there (see '
                               f'README "Datasets") or set data_root / data_prefix in the config')
    img_suffix = dataset.get('img_suffix', '.jpg')
    seg_suffix = dataset.get('seg_map_suffix', '.png')
    images, labels = _stems(img_dir, img_suffix), _stems(ann_dir, seg_suffix)
    if not images:
        raise DatasetError(f'no *{img_suffix} images in {img_dir}')
    if images.keys() != labels.keys():
        no_label = sorted(images.keys() - labels.keys())
        no_image = sorted(labels.keys() - images.keys())
        raise DatasetError(f'{len(images)} images in {img_dir} but {len(labels)} annotations in {ann_dir}: '
                           f'{len(no_label)} images lack a {seg_suffix} map (e.g. {no_label[:3]}), '
                           f'{len(no_image)} maps lack an image (e.g. {no_image[:3]})')
    reduce_zero = dataset.get('reduce_zero_label', False)
    # reduce_zero_label: 0 is ignore and 1..num_classes are classes; else 0..num_classes-1, 255 ignore
    highest = num_classes if reduce_zero else num_classes - 1
    names = sorted(labels)
    step = max(1, len(names) // max_label_files)
    for name in names[::step]:
        values = np.unique(np.asarray(Image.open(labels[name])))
        bad = values[(values > highest) & (values != 255)]
        if bad.size:
            raise DatasetError(f'{labels[name]} has label values {bad.tolist()} above the {num_classes} '
                               f'classes the model predicts (valid: {"1" if reduce_zero else "0"}..{highest}, '
                               f'{"0" if reduce_zero else "255"} = ignore); fix the map or num_classes')


def check_coco_dataset(dataset: dict) -> None:
    """The annotation file exists and parses, and its images are in the image folder."""
    root = dataset.get('data_root') or ''
    ann_file = osp.join(root, dataset.get('ann_file', ''))
    img_dir = osp.join(root, dataset.get('data_prefix', {}).get('img', ''))
    if not osp.isfile(ann_file):
        raise DatasetError(f'annotation file {ann_file} does not exist; put COCO there (see README '
                           f'"Datasets") or set data_root / ann_file in the config')
    if not osp.isdir(img_dir):
        raise DatasetError(f'image folder {img_dir} does not exist')
    with open(ann_file) as f:
        coco = json.load(f)
    missing = [im['file_name'] for im in coco.get('images', []) if not osp.isfile(osp.join(img_dir, im['file_name']))]
    if missing:
        raise DatasetError(f'{len(missing)} images listed in {ann_file} are not in {img_dir} (e.g. {missing[:3]})')


def check_dataset_cfg(dataset: dict, num_classes: int | None) -> None:
    """Dispatch on the dataset config's shape; wrappers (Repeat/Concat) are checked inside."""
    if 'dataset' in dataset:
        return check_dataset_cfg(dataset['dataset'], num_classes)
    if 'datasets' in dataset:
        for sub in dataset['datasets']:
            check_dataset_cfg(sub, num_classes)
        return
    if 'seg_map_path' in dataset.get('data_prefix', {}) and num_classes:
        check_seg_dataset(dataset, num_classes)
    elif str(dataset.get('ann_file', '')).endswith('.json'):
        check_coco_dataset(dataset)
