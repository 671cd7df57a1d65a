"""Catch broken datasets before a run starts, with errors that say what is wrong and where.

mmseg and mmdet fail only once a bad sample is loaded, often hours in (or never: a label above the class
count silently trains a wrong class). These checks read the Runner's dataset configs and fail fast."""
import inspect
import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
CLASSIFICATION_TYPES = ('ImageNet', 'CustomDataset')  # mmpretrain's folder-layout datasets
SAMPLED_FILES = 500  # images and label maps decoded per check, evenly spread (the full ADE20K has 20k)


class DatasetError(ValueError):
    """A dataset that cannot be trained or evaluated on as configured."""


def _spread(items: list, count: int = SAMPLED_FILES) -> list:
    """Up to about ``count`` items evenly spread over ``items``."""
    return items[::max(1, len(items) // count)]


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


def check_images(paths: list[Path]) -> None:
    """No image is empty (all checked), and a spread sample decodes."""
    for path in [p for p in paths if p.stat().st_size == 0] + _spread(paths):
        read_image(path)


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


def check_seg_dataset(dataset: dict, num_classes: int) -> None:
    """Paths exist, images and annotations pair up, none is empty or unreadable, and labels fit
    ``num_classes``; settings the config leaves out are the dataset class's defaults."""
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
    check_images([images[name] for name in names])
    # reduce_zero_label: 0 (and 255) ignore, 1..num_classes are classes; else 0..num_classes-1, 255 ignore
    reduce_zero = bool(dataset.get('reduce_zero_label', False))
    convention = (f'valid 1..{num_classes} with 0 and 255 = ignore, since reduce_zero_label=True' if reduce_zero
                  else f'valid 0..{num_classes - 1} with 255 = ignore, since reduce_zero_label=False')
    for name in _spread(names):
        values = np.unique(np.asarray(read_image(labels[name], 'label map')))
        bad = values[(values > (num_classes if reduce_zero else num_classes - 1)) & (values != 255)]
        if bad.size:
            raise DatasetError(f'{labels[name]} has label values {bad.tolist()} above the {num_classes} classes '
                               f'the model predicts ({convention}); fix the map, num_classes or reduce_zero_label')


def check_coco_dataset(dataset: dict) -> None:
    """The annotation file exists and parses, and its images are in the image folder."""
    root = Path(dataset.get('data_root') or '')
    ann_file, img_dir = root / dataset.get('ann_file', ''), root / dataset.get('data_prefix', {}).get('img', '')
    if not ann_file.is_file():
        raise DatasetError(f'annotation file {ann_file} does not exist; put COCO there (see README '
                           f'"Datasets") or set data_root / ann_file in the config')
    if not img_dir.is_dir():
        raise DatasetError(f'image folder {img_dir} does not exist')
    listed = [img_dir / im['file_name'] for im in json.loads(ann_file.read_text()).get('images', [])]
    if missing := [str(p) for p in listed if not p.is_file()]:
        raise DatasetError(f'{len(missing)} images listed in {ann_file} are not in {img_dir} (e.g. {missing[:3]})')
    check_images(listed)


def check_classification_dataset(dataset: dict) -> None:
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
    check_images(images)


def check_dataset_cfg(dataset: dict, num_classes: int | None) -> None:
    """Dispatch on the dataset config's shape; wrappers (Repeat/Concat) are checked inside."""
    if 'dataset' in dataset or 'datasets' in dataset:
        for sub in [dataset['dataset']] if 'dataset' in dataset else dataset['datasets']:
            check_dataset_cfg(sub, num_classes)
        return
    prefix = dataset.get('data_prefix', {})
    if isinstance(prefix, dict) and 'seg_map_path' in prefix and num_classes:
        check_seg_dataset(dataset, num_classes)
    elif str(dataset.get('ann_file', '')).endswith('.json'):
        check_coco_dataset(dataset)
    elif str(dataset.get('type', '')).split('.')[-1] in CLASSIFICATION_TYPES:
        check_classification_dataset(dataset)
