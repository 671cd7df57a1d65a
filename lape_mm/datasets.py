"""Catch broken datasets before a run starts, with errors that say what is wrong and where.

mmseg and mmdet fail only once a bad sample is loaded, often hours in (or never: a label above the class
count silently trains a wrong class, a label map of another size than its image trains on misaligned
labels, a COCO box outside its image is dropped). These checks read the Runner's dataset configs and
fail fast. Listings, file sizes and COCO's json are checked whole; decoding images and label maps
reads ``sample`` files evenly spread over the set (:data:`SAMPLED_FILES`; ``None`` reads all).
"""
import inspect
import json
from pathlib import Path

import numpy as np
from mmengine.logging import print_log
from PIL import Image, UnidentifiedImageError

from .errors import DatasetError

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
CLASSIFICATION_TYPES = ('ImageNet', 'CustomDataset')  # mmpretrain's folder-layout datasets
SAMPLED_FILES = 500  # images and label maps decoded per check, evenly spread (the full ADE20K has 20k)


def _spread(items: list, count: int | None) -> list:
    """At most ``count`` items evenly spread over ``items`` (first and last included); all for None."""
    if count is None or len(items) <= count:
        return list(items)
    return [items[i] for i in sorted(set(np.linspace(0, len(items) - 1, count).round().astype(int)))]


def _log_sample(what: str, read: int, total: int) -> None:
    if read < total:
        print_log(f'data check: decoded {read} of the {total} {what}, evenly spread (every file is checked '
                  f'for being empty; --check-all-files decodes every one)', logger='current')


def read_image(path: str | Path, what: str = 'image') -> Image.Image:
    """Open ``path`` with PIL, or raise :class:`DatasetError` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f'{what} {path} does not exist')
    fix = 're-copy it from the original dataset or delete it (with its annotation)'
    if path.stat().st_size == 0:
        raise DatasetError(f'{what} {path} is empty (0 bytes); {fix}')
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetError(f'{what} {path} cannot be read as an image ({err}); {fix}') from None
    return image


def check_not_empty(paths: list[Path], what: str = 'image') -> None:
    """No file is empty: cheap enough for every file (a stat each)."""
    for path in paths:
        if path.stat().st_size == 0:
            read_image(path, what)


def check_images(paths: list[Path], sample: int | None = SAMPLED_FILES) -> list[Image.Image]:
    """No image is empty (all checked), and ``sample`` of them, evenly spread, decode; returns those."""
    check_not_empty(paths)
    return [read_image(path) for path in _spread(paths, sample)]


def dataset_defaults(dataset_type) -> dict:
    """The keyword defaults of an mmseg dataset class's ``__init__`` chain (e.g. ``ADE20KDataset``'s
    ``reduce_zero_label=True``); empty for a type that is not registered in mmseg."""
    from mmseg.registry import DATASETS
    if not dataset_type:
        return {}
    cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else dataset_type
    return {name: p.default for klass in (reversed(inspect.getmro(cls)) if inspect.isclass(cls) else ())
            if '__init__' in vars(klass)
            for name, p in inspect.signature(klass.__init__).parameters.items() if p.default is not p.empty}


def check_seg_dataset(dataset: dict, num_classes: int, sample: int | None = SAMPLED_FILES) -> None:
    """Paths exist, images and annotations pair up and none is empty; in ``sample`` pairs the files
    decode, each label map is one channel of the image's size and its labels fit ``num_classes``.
    Settings the config leaves out are the dataset class's defaults."""
    dataset = {**dataset_defaults(dataset.get('type')), **dataset}
    root, prefix = Path(dataset.get('data_root') or ''), dataset.get('data_prefix', {})
    img_dir, ann_dir = root / prefix.get('img_path', ''), root / prefix.get('seg_map_path', '')
    for name, folder in (('images', img_dir), ('annotations', ann_dir)):
        if not folder.is_dir():
            raise DatasetError(f'{name} folder {folder} does not exist; put the dataset there (see '
                               f'README "Datasets") or set data_root / data_prefix in the config')
    img_suffix, seg_suffix = dataset.get('img_suffix', '.jpg'), dataset.get('seg_map_suffix', '.png')
    images, labels = ({str(p.relative_to(folder))[:-len(suffix)]: p for p in folder.rglob(f'*{suffix}')}
                      for folder, suffix in ((img_dir, img_suffix), (ann_dir, seg_suffix)))
    if not images:
        raise DatasetError(f'no *{img_suffix} images in {img_dir}')
    if images.keys() != labels.keys():
        no_label, no_image = sorted(images.keys() - labels.keys()), sorted(labels.keys() - images.keys())
        raise DatasetError(f'{len(images)} images in {img_dir} but {len(labels)} annotations in {ann_dir}: '
                           f'{len(no_label)} images lack a {seg_suffix} map (e.g. {no_label[:3]}), '
                           f'{len(no_image)} maps lack an image (e.g. {no_image[:3]})')
    names = sorted(labels)
    check_not_empty([images[name] for name in names])
    check_not_empty([labels[name] for name in names], 'label map')
    # reduce_zero_label: 0 (and 255) ignore, 1..num_classes are classes; else 0..num_classes-1, 255 ignore
    reduce_zero = bool(dataset.get('reduce_zero_label', False))
    convention = (f'valid 1..{num_classes} with 0 and 255 = ignore, since reduce_zero_label=True' if reduce_zero
                  else f'valid 0..{num_classes - 1} with 255 = ignore, since reduce_zero_label=False')
    checked = _spread(names, sample)
    _log_sample(f'image/label pairs in {img_dir}', len(checked), len(names))
    for name in checked:
        image, label = read_image(images[name]), read_image(labels[name], 'label map')
        if len(label.getbands()) != 1:
            raise DatasetError(f'label map {labels[name]} is a {label.mode} image, but label maps hold one class id '
                               f'per pixel (mode L or P, as ADE20K\'s): convert the colours to class ids')
        if label.size != image.size:
            raise DatasetError(f'label map {labels[name]} is {label.size[0]}x{label.size[1]} but its image '
                               f'{images[name]} is {image.size[0]}x{image.size[1]}: the labels would not line up '
                               f'with the pixels; pair each image with its own map')
        values = np.unique(np.asarray(label))
        bad = values[(values > (num_classes if reduce_zero else num_classes - 1)) & (values != 255)]
        if bad.size:
            raise DatasetError(f'{labels[name]} has label values {bad.tolist()} above the {num_classes} classes '
                               f'the model predicts ({convention}); fix the map, num_classes or reduce_zero_label')


def read_coco_json(ann_file: Path) -> dict:
    """A COCO annotation file's content, or :class:`DatasetError` naming it."""
    if not ann_file.is_file():
        raise DatasetError(f'annotation file {ann_file} does not exist; put COCO there (see README '
                           f'"Datasets") or set data_root / ann_file in the config')
    try:
        coco = json.loads(ann_file.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise DatasetError(f'annotation file {ann_file} is not valid JSON ({err}); it may be truncated: '
                           f'download or write it again') from None
    if not isinstance(coco, dict) or not isinstance(coco.get('images'), list):
        raise DatasetError(f'annotation file {ann_file} is not a COCO annotation file (no "images" list)')
    return coco


def check_coco_annotations(coco: dict, ann_file: Path, labelled: bool = True) -> None:
    """Every annotation names a listed image and a listed category, and its box lies in its image (to
    a pixel); with ``labelled`` (training, validation) there must be annotations at all."""
    annotations = coco.get('annotations')
    if not annotations:
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
        if x < -1 or y < -1 or x + w > image['width'] + 1 or y + h > image['height'] + 1:
            raise DatasetError(f'{what} has box [x, y, w, h] = {ann["bbox"]} outside its image {image["file_name"]} '
                               f'({image["width"]}x{image["height"]}); clip the box or fix the image size')


def check_coco_dataset(dataset: dict, sample: int | None = SAMPLED_FILES, labelled: bool = True) -> None:
    """The annotation file parses and its annotations are consistent (:func:`check_coco_annotations`),
    its images are in the image folder, none is empty and ``sample`` of them decode."""
    root = Path(dataset.get('data_root') or '')
    ann_file, img_dir = root / dataset.get('ann_file', ''), root / dataset.get('data_prefix', {}).get('img', '')
    coco = read_coco_json(ann_file)
    check_coco_annotations(coco, ann_file, labelled)
    if not img_dir.is_dir():
        raise DatasetError(f'image folder {img_dir} does not exist')
    listed = [img_dir / im['file_name'] for im in coco['images']]
    if missing := [str(p) for p in listed if not p.is_file()]:
        raise DatasetError(f'{len(missing)} images listed in {ann_file} are not in {img_dir} (e.g. {missing[:3]})')
    _log_sample(f'images of {ann_file}', len(check_images(listed, sample)), len(listed))


def check_classification_dataset(dataset: dict, sample: int | None = SAMPLED_FILES) -> None:
    """mmpretrain's ImageNet / CustomDataset: the image folder (and list file, if any) exist and hold
    readable images."""
    root = Path(dataset.get('data_root') or '')
    prefix = dataset.get('data_prefix') or dataset.get('split') or ''
    folder = root / (prefix.get('img_path', '') if isinstance(prefix, dict) else prefix)
    if not folder.is_dir():
        raise DatasetError(f'image folder {folder} does not exist; put the dataset there as '
                           f'{folder}/CLASS/*.JPEG (see README "Datasets"; tools/make_tiny_imagenet.py writes a '
                           f'tiny one) or set data_root / data_prefix in the config')
    if (ann_file := dataset.get('ann_file')) and not (root / ann_file).is_file():
        raise DatasetError(f'image list {root / ann_file} does not exist; add it or drop ann_file to read '
                           f'the class folders of {folder}')
    images = sorted(p for p in folder.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f'no images in {folder}; expected {folder}/CLASS/*.JPEG')
    _log_sample(f'images in {folder}', len(check_images(images, sample)), len(images))


def check_dataset_cfg(dataset: dict, num_classes: int | None, sample: int | None = SAMPLED_FILES,
                      labelled: bool = True) -> None:
    """Dispatch on the dataset config's shape; wrappers (Repeat/Concat) are checked inside. ``sample``:
    how many files to decode (None: all); ``labelled``: COCO needs annotations (not for a test-dev list)."""
    if 'dataset' in dataset or 'datasets' in dataset:
        for sub in [dataset['dataset']] if 'dataset' in dataset else dataset['datasets']:
            check_dataset_cfg(sub, num_classes, sample, labelled)
        return
    prefix = dataset.get('data_prefix', {})
    if isinstance(prefix, dict) and 'seg_map_path' in prefix and num_classes:
        check_seg_dataset(dataset, num_classes, sample)
    elif str(dataset.get('ann_file', '')).endswith('.json'):
        check_coco_dataset(dataset, sample, labelled)
    elif str(dataset.get('type', '')).split('.')[-1] in CLASSIFICATION_TYPES:
        check_classification_dataset(dataset, sample)
