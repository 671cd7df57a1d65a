"""Issue 22: datasets that would train on misaligned labels, silently drop data or crash mid-training are
refused before training, naming the file; decoding reads a sample, which the log says, or every file."""
import json
import logging
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from lape_mm.datasets import DatasetError, check_coco_dataset, check_seg_dataset
from tools.tiny_data import make_tiny_ade, make_tiny_coco

from conftest import ROOT
from tiny_runs import TINY_SEG as TINY


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    return make_tiny_coco(tmp_path_factory.mktemp('coco'), num_train=3, num_val=1, seed=2)


def _ade(tmp_path, num_train=3):
    root = make_tiny_ade(tmp_path, num_train=num_train, num_val=1)
    dataset = dict(type='ADE20KDataset', data_root=str(root),
                   data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
    return root, dataset


def test_an_annotation_of_another_size_than_its_image_is_refused(tmp_path):
    root, dataset = _ade(tmp_path)
    check_seg_dataset(dataset, num_classes=150)
    label_path = sorted((root / 'annotations/training').glob('*.png'))[1]
    label = Image.open(label_path)
    label.resize((label.width + 16, label.height), Image.NEAREST).save(label_path)
    with pytest.raises(DatasetError, match=rf'label map {re.escape(str(label_path))} is {label.width + 16}x'
                                           rf'{label.height} but its image .*{label_path.stem}\.jpg is '
                                           rf'{label.width}x{label.height}'):
        check_seg_dataset(dataset, num_classes=150)


def test_an_rgb_annotation_is_refused(tmp_path):
    root, dataset = _ade(tmp_path)
    label_path = sorted((root / 'annotations/training').glob('*.png'))[0]
    Image.open(label_path).convert('RGB').save(label_path)  # same size, values 0..150 in each channel
    with pytest.raises(DatasetError, match=rf'label map {re.escape(str(label_path))} is a RGB image'):
        check_seg_dataset(dataset, num_classes=150)


def _coco_copy(tiny_coco, tmp_path, edit) -> dict:
    """The tiny COCO set with its val json edited by ``edit(coco)``; the dataset config for it."""
    root = tmp_path / 'coco'
    shutil.copytree(tiny_coco, root)
    ann_file = root / 'annotations/instances_val2017.json'
    coco = json.loads(ann_file.read_text())
    edit(coco)
    ann_file.write_text(json.dumps(coco))
    return dict(data_root=str(root), ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/'))


def _set_first(key, value):
    return lambda coco: coco['annotations'][0].update({key: value})


@pytest.mark.parametrize('edit, message', [
    (_set_first('category_id', 2), r'annotation \d+ in .*instances_val2017\.json has category_id 2, which is not in '
                                   r'"categories" \(ids \[1, 3, 16, 18\]\)'),
    (_set_first('bbox', [1000.0, 10.0, 40.0, 20.0]),
     r'annotation \d+ in .*instances_val2017\.json has box \[x, y, w, h\] = \[1000\.0, .* outside its image '
     r'000000000004\.jpg'),
    (_set_first('bbox', [-5.0, 10.0, 40.0, 20.0]), 'outside its image'),
    (lambda coco: coco.update(annotations=[]), r'instances_val2017\.json has no annotations'),
    (lambda coco: coco.pop('annotations'), r'instances_val2017\.json has no annotations'),
])
def test_inconsistent_coco_annotations_are_refused(tiny_coco, tmp_path, edit, message):
    dataset = _coco_copy(tiny_coco, tmp_path, edit)
    with pytest.raises(DatasetError, match=message):
        check_coco_dataset(dataset)


def test_coco_image_list_without_annotations_passes_for_testing(tiny_coco, tmp_path):
    check_coco_dataset(_coco_copy(tiny_coco, tmp_path, lambda coco: coco.pop('annotations')), labelled=False)


def test_a_truncated_coco_json_is_named(tiny_coco, tmp_path):
    dataset = _coco_copy(tiny_coco, tmp_path, lambda coco: None)
    ann_file = tmp_path / 'coco/annotations/instances_val2017.json'
    ann_file.write_bytes(ann_file.read_bytes()[:200])
    with pytest.raises(DatasetError, match=rf'annotation file {re.escape(str(ann_file))} is not valid JSON .*'
                                           r'truncated'):
        check_coco_dataset(dataset)


def test_decoding_reads_an_evenly_spread_sample_says_so_or_reads_all(tmp_path, monkeypatch, capsys):
    """A broken label map between the sampled ones passes the sampled check (the log says it was a
    sample) and is caught when every file is checked (``--check-all-files``)."""
    import lape_mm.datasets as datasets
    from test_user_errors import assert_one_line_usage_error, run_tool_here
    root, dataset = _ade(tmp_path, num_train=5)
    monkeypatch.setattr(datasets, 'SAMPLED_FILES', 3)  # of 5 pairs: the 1st, 3rd and 5th
    logged = []
    monkeypatch.setattr(datasets, 'print_log', lambda msg, logger=None, level=logging.INFO: logged.append(msg))
    second = sorted((root / 'annotations/training').glob('*.png'))[1]
    Image.fromarray(np.full((4, 4), 1, np.uint8)).save(second)  # of another size than its image
    check_seg_dataset(dataset, num_classes=150, sample=3)
    assert logged == [f'data check: decoded 3 of the 5 image/label pairs in {root}/images/training, evenly spread '
                      f'(every file is checked for being empty; --check-all-files decodes every one)']
    with pytest.raises(DatasetError, match=re.escape(str(second))):
        check_seg_dataset(dataset, num_classes=150, sample=None)
    code, err = run_tool_here(capsys, 'train', str(ROOT / TINY), '--work-dir', str(tmp_path / 'work'),
                              '--check-all-files', '--cfg-options', f'train_dataloader.dataset.data_root={root}',
                              f'val_dataloader.dataset.data_root={root}')
    assert_one_line_usage_error(code, err, str(second))
