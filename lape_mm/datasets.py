"""Catch broken datasets before a run starts, with errors that say what is wrong and where.

The libraries fail only once a bad sample is loaded, hours in, or never: a label above the class count, a label
map of another size than its image, a COCO box outside its image (mmdet drops it), a class folder missing from
the validation set (every later label shifts). These checks read the datasets as mmseg, mmdet and mmpretrain
built them. Listings, file sizes, labels and COCO's json are checked whole; decoding reads ``sample`` images
and label maps, evenly spread (None: all). :class:`lape_mm.engine.DataCheckHook` runs them.
"""
from __future__ import annotations

import os

import numpy as np
from mmengine.fileio import load
from mmengine.logging import print_log
from PIL import Image, UnidentifiedImageError

from .errors import DatasetError

SAMPLED_FILES = 500  # images and label maps decoded per dataset, evenly spread (the full ADE20K has 20k)


def read_image(path: str | os.PathLike, what: str = 'image') -> Image.Image:
    """Open ``path`` with PIL, or raise :class:`DatasetError` naming the file and the problem."""
    if not os.path.isfile(path):
        raise DatasetError(f'{what} {path} does not exist')
    fix = 're-copy it from the original dataset or delete it (with its annotation)'
    if os.path.getsize(path) == 0:
        raise DatasetError(f'{what} {path} is empty (0 bytes); {fix}')
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetError(f'{what} {path} cannot be read as an image ({err}); {fix}') from None
    return image


def check_files(paths: list[str], what: str = 'image') -> None:
    """Every file exists and is not empty: a stat each, cheap enough for all of them."""
    for path in paths:
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            read_image(path, what)


def check_images(paths: list[str], sample: int | None, what: str) -> None:
    """No image is missing or empty (all checked), and ``sample`` of them, evenly spread, decode."""
    check_files(paths)
    for i in sampled(len(paths), sample, what):
        read_image(paths[i])


def sampled(count: int, sample: int | None, what: str) -> list[int]:
    """The indices of at most ``sample`` of ``count`` files (None: all), evenly spread, first and last
    included: the ones to decode. The log says when that is not all of them."""
    if sample is None or count <= sample:
        return list(range(count))
    print_log(f'data check: decoded {sample} of the {count} {what}, evenly spread (every file is checked for '
              f'being empty; --check-all-files, or DataCheckHook(sample=None), decodes every one)', logger='current')
    return np.linspace(0, count - 1, sample).round().astype(int).tolist()  # distinct: the step is >= 1


def leaves(dataset) -> list:
    """The datasets inside wrappers (mmengine's Repeat/Concat/ClassBalanced, mmdet's MultiImageMix)."""
    if hasattr(dataset, 'datasets'):
        return [leaf for inner in dataset.datasets for leaf in leaves(inner)]
    return leaves(dataset.dataset) if hasattr(dataset, 'dataset') else [dataset]


def data_infos(dataset) -> list[dict]:
    """The samples as the dataset listed them (mmengine may hold them serialized)."""
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def _classes(dataset) -> tuple | None:
    """The classes a dataset numbers its labels by: its metainfo's (mmpretrain's CustomDataset without
    configured classes: the class folders it found; mmdet's panoptic COCO: the thing classes, as its box head)."""
    return dataset.metainfo.get('thing_classes') or dataset.metainfo.get('classes')


def _where(dataset) -> str:
    return dataset.ann_file or dataset.data_prefix.get('img_path') or dataset.data_root


def _listed(classes: tuple) -> str:
    return f'{len(classes)} classes {list(classes) if len(classes) <= 12 else [*classes[:5], "...", *classes[-5:]]}'


def check_same_classes(train, val) -> None:
    """The validation set numbers its labels by the training set's classes. mmpretrain's CustomDataset
    numbers the class folders it finds, so one missing from val shifts every later label by one."""
    (train, train_classes), (val, val_classes) = ((leaf, _classes(leaf)) for leaf in (leaves(train)[0], leaves(val)[0]))
    if train_classes and val_classes and tuple(train_classes) != tuple(val_classes):
        missing, extra = sorted(set(train_classes) - set(val_classes)), sorted(set(val_classes) - set(train_classes))
        raise DatasetError(f'the validation set {_where(val)} has {_listed(val_classes)} but the training set '
                           f'{_where(train)} has {_listed(train_classes)} (missing in validation: {missing}, only in '
                           f'validation: {extra}): labels are numbered by position, so each one after a difference '
                           f'would be scored as another class; give both the same classes (class folders: an empty '
                           f'folder keeps the numbering)')


def check_seg_dataset(dataset, num_classes: int | None, sample: int | None = SAMPLED_FILES) -> None:
    """mmseg's ``BaseSegDataset``: each listed image has a label map and no file is empty; in ``sample``
    pairs the files decode, each label map is one channel of its image's size and its labels fit
    ``num_classes`` (if known) under the dataset's ``reduce_zero_label``."""
    infos = data_infos(dataset)
    img_dir, ann_dir = dataset.data_prefix.get('img_path', ''), dataset.data_prefix.get('seg_map_path', '')
    if not infos:
        raise DatasetError(f'no *{dataset.img_suffix} images in {img_dir}')
    if not os.path.isdir(ann_dir):
        raise DatasetError(f'annotations folder {ann_dir} does not exist; put the dataset there (see README '
                           f'"Datasets") or set data_root / data_prefix in the config')
    images, maps = [info['img_path'] for info in infos], [info['seg_map_path'] for info in infos]
    if no_map := [os.path.relpath(image, img_dir) for image, map_ in zip(images, maps) if not os.path.isfile(map_)]:
        raise DatasetError(f'{len(images)} images in {img_dir} but {len(images) - len(no_map)} annotations in '
                           f'{ann_dir}: {len(no_map)} images lack a {dataset.seg_map_suffix} map (e.g. {no_map[:3]})')
    check_files(images)
    check_files(maps, 'label map')
    reduce_zero = dataset.reduce_zero_label  # 0 (and 255) ignore, 1..num_classes are classes; else 0..num_classes-1
    for i in sampled(len(images), sample, f'image/label pairs in {img_dir}'):
        image, label = read_image(images[i]), read_image(maps[i], 'label map')
        if len(label.getbands()) != 1:
            raise DatasetError(f'label map {maps[i]} is a {label.mode} image, but label maps hold one class id '
                               f'per pixel (mode L or P, as ADE20K\'s): convert the colours to class ids')
        if label.size != image.size:
            raise DatasetError(f'label map {maps[i]} is {label.size[0]}x{label.size[1]} but its image {images[i]} '
                               f'is {image.size[0]}x{image.size[1]}: the labels would not line up with the pixels; '
                               f'pair each image with its own map')
        values = np.unique(np.asarray(label))
        if num_classes and (bad := values[(values > (num_classes if reduce_zero else num_classes - 1))
                                          & (values != 255)]).size:
            convention = (f'valid 1..{num_classes} with 0 and 255 = ignore, since reduce_zero_label=True' if reduce_zero
                          else f'valid 0..{num_classes - 1} with 255 = ignore, since reduce_zero_label=False')
            raise DatasetError(f'{maps[i]} has label values {bad.tolist()} above the {num_classes} classes the model '
                               f'predicts ({convention}); fix the map, num_classes or reduce_zero_label')


def check_coco_annotations(coco: dict, ann_file: str, labelled: bool = True) -> None:
    """Every annotation names a listed image and a listed category, and its box has no negative side and
    lies in its image (to a pixel); with ``labelled`` (training, validation) there must be annotations."""
    if not isinstance(coco.get('images'), list):
        raise DatasetError(f'annotation file {ann_file} is not a COCO annotation file (no "images" list)')
    if not (annotations := coco.get('annotations')):
        if labelled:
            raise DatasetError(f'{ann_file} has no annotations: training and evaluation need them; point ann_file '
                               f'at the instances_*.json file of the split')
        return
    images = {im['id']: im for im in coco['images']}
    categories = {cat['id'] for cat in coco.get('categories', [])}
    for ann in annotations:
        what = f'annotation {ann.get("id")} in {ann_file}'
        if (image := images.get(ann.get('image_id'))) is None:
            raise DatasetError(f'{what} is of image_id {ann.get("image_id")}, which "images" does not list')
        if ann.get('category_id') not in categories:
            raise DatasetError(f'{what} has category_id {ann.get("category_id")}, which is not in "categories" '
                               f'(ids {sorted(categories)}); fix the id or add the category')
        x, y, w, h = ann.get('bbox') or (0, 0, 0, 0)
        if w < 0 or h < 0:  # zero is left to mmdet, which drops it: COCO's train2017 has two of height 0
            raise DatasetError(f'{what} has box [x, y, w, h] = {ann["bbox"]} of negative width or height, which '
                               f'mmdet drops silently; COCO boxes are [left, top, width, height]: fix the box')
        if x < -1 or y < -1 or x + w > image['width'] + 1 or y + h > image['height'] + 1:
            raise DatasetError(f'{what} has box [x, y, w, h] = {ann["bbox"]} outside its image {image["file_name"]} '
                               f'({image["width"]}x{image["height"]}); clip the box or fix the image size')


def check_coco_dataset(dataset, sample: int | None = SAMPLED_FILES, labelled: bool = True) -> None:
    """mmdet's ``CocoDataset``: its annotation file, read whole, is consistent (:func:`check_coco_annotations`);
    every image the dataset lists exists and is not empty, and ``sample`` of them decode."""
    ann_file, img_dir = dataset.ann_file, dataset.data_prefix.get('img', '')
    check_coco_annotations(load(ann_file, file_format='json', backend_args=dataset.backend_args), ann_file, labelled)
    images = [info['img_path'] for info in data_infos(dataset)]
    if missing := [path for path in images if not os.path.isfile(path)]:
        raise DatasetError(f'{len(missing)} images listed in {ann_file} are not in {img_dir} (e.g. {missing[:3]})')
    check_images(images, sample, f'images of {ann_file}')


def check_dataset(dataset, num_classes: int | None, sample: int | None = SAMPLED_FILES, labelled: bool = True) -> None:
    """Check each dataset in ``dataset`` (wrappers unwrapped) by its library's kind: its classes are the
    ``num_classes`` the model predicts (None: not known), its files and labels as above. ``sample``: how many
    files to decode (None: all); ``labelled``: COCO needs annotations (not for a test-dev list)."""
    for leaf in leaves(dataset):
        kinds = {cls.__name__ for cls in type(leaf).__mro__}  # by name: no library is imported for this
        if num_classes and (classes := _classes(leaf)) and len(classes) != num_classes:
            raise DatasetError(f'{_where(leaf)} has {_listed(classes)} but the model predicts {num_classes}: set '
                               f'the head\'s num_classes to {len(classes)}, or give the dataset the model\'s classes')
        if 'BaseSegDataset' in kinds:  # mmseg
            check_seg_dataset(leaf, num_classes, sample)
        elif 'CocoDataset' in kinds and 'CocoPanopticDataset' not in kinds:  # mmdet's boxes; not segments_info
            check_coco_dataset(leaf, sample, labelled)
        elif 'CustomDataset' in kinds:  # mmpretrain's, and its ImageNet
            check_images([info['img_path'] for info in data_infos(leaf)], sample, f'images in {leaf.img_prefix}')
