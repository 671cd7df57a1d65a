"""lape_mm.datasets and its DataCheckHook, on datasets as mmseg, mmdet and mmpretrain build them: data that
would train on misaligned labels, silently drop data, shift labels or crash mid-training is refused before
training, naming the file; decoding reads a sample, which the log says, while listings and sizes are whole."""
import json
import logging
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from PIL import Image

import lape_mm.engine.data_check_hook as data_check_hook
from lape_mm.datasets import (SAMPLED_FILES, DatasetError, check_coco_dataset, check_dataset, check_same_classes,
                              check_seg_dataset)
from lape_mm.engine import DataCheckHook
from tools.tiny_data import make_tiny_ade, make_tiny_coco, make_tiny_imagenet
from tools.tiny_data.coco import CLASSES

from conftest import (ROOT, assert_one_line_usage_error, build_dataset, build_model, free_port, run_process,
                      run_tool_here, tool_command)
from helpers.tiny_runs import DEIT, MASK_RCNN, UPERNET, UPERNET_LAYERS, cfg_options, cls_options, derived_config, seg_options


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    return make_tiny_coco(tmp_path_factory.mktemp('coco'), num_train=3, num_val=1, seed=2)


def _ade(root, split='training', type='ADE20KDataset', **settings):
    """mmseg's dataset of ``root`` (``images/<split>``, ``annotations/<split>``)."""
    return build_dataset(dict(type=type, data_root=str(root), **settings,
                              data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}')),
                         'mmseg')


def _tiny_ade(tmp_path, num_train=3):
    root = make_tiny_ade(tmp_path, num_train=num_train, num_val=1)
    return root, _ade(root)


def _coco(root, ann_file='annotations/instances_val2017.json', img='val2017/'):
    return build_dataset(dict(type='CocoDataset', data_root=str(root), ann_file=ann_file, data_prefix=dict(img=img),
                              metainfo=dict(classes=CLASSES)), 'mmdet')


def _imagenet(root, split):
    return build_dataset(dict(type='CustomDataset', data_root=str(root), data_prefix=split), 'mmpretrain')


# --- segmentation: label maps that fit their images and the model's classes ------------------------

def test_an_annotation_of_another_size_than_its_image_is_refused(tmp_path):
    root, dataset = _tiny_ade(tmp_path)
    check_seg_dataset(dataset, num_classes=150)
    label_path = sorted((root / 'annotations/training').glob('*.png'))[1]
    label = Image.open(label_path)
    label.resize((label.width + 16, label.height), Image.NEAREST).save(label_path)
    with pytest.raises(DatasetError, match=rf'label map {re.escape(str(label_path))} is {label.width + 16}x'
                                           rf'{label.height} but its image .*{label_path.stem}\.jpg is '
                                           rf'{label.width}x{label.height}'):
        check_seg_dataset(dataset, num_classes=150)


def test_an_rgb_annotation_is_refused(tmp_path):
    root, dataset = _tiny_ade(tmp_path)
    label_path = sorted((root / 'annotations/training').glob('*.png'))[0]
    Image.open(label_path).convert('RGB').save(label_path)  # same size, values 0..150 in each channel
    with pytest.raises(DatasetError, match=rf'label map {re.escape(str(label_path))} is a RGB image'):
        check_seg_dataset(dataset, num_classes=150)


def test_labels_above_the_classes_and_images_without_a_map_are_refused(tmp_path):
    root, dataset = _tiny_ade(tmp_path)
    with pytest.raises(DatasetError, match='above the 3 classes'):
        check_seg_dataset(dataset, num_classes=3)
    next((root / 'annotations/training').glob('*.png')).unlink()
    with pytest.raises(DatasetError, match='3 images .* but 2 annotations'):
        check_seg_dataset(dataset, num_classes=150)


def _one_pixel_row(root, labels: list[int]):
    """An image and its label map holding ``labels``, as ``root/images/training``, ``root/annotations/training``."""
    for folder in ('images', 'annotations'):
        (root / folder / 'training').mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((1, len(labels), 3), np.uint8)).save(root / 'images/training/a.jpg')  # the map's size
    Image.fromarray(np.array(labels, np.uint8).reshape(1, -1)).save(root / 'annotations/training/a.png')
    return root


def test_ade20k_labels_0_to_150_pass_with_the_dataset_class_default(tmp_path):
    """ADE20KDataset's reduce_zero_label=True is read from the dataset mmseg built, as any other setting."""
    root = _one_pixel_row(tmp_path, [0, 1, 150])
    check_seg_dataset(_ade(root), num_classes=150)
    check_seg_dataset(_ade(root, type='BaseSegDataset', reduce_zero_label=True), num_classes=150)
    with pytest.raises(DatasetError, match=r'\[150\] above the 150 classes .*valid 0\.\.149 with 255 = ignore, '
                                           r'since reduce_zero_label=False'):
        check_seg_dataset(_ade(root, reduce_zero_label=False), num_classes=150)
    with pytest.raises(DatasetError, match=r'\[150\] .*valid 1\.\.149 with 0 and 255 = ignore'):
        check_seg_dataset(_ade(root), num_classes=149)


@pytest.mark.parametrize('content', [b'', b'not an image at all'])
def test_bad_images_are_named_before_training_and_inference(tmp_path, content):
    from lape_mm.apis import segment_image
    root, dataset = _tiny_ade(tmp_path)
    bad = next((root / 'images/training').glob('*.jpg'))
    bad.write_bytes(content)
    with pytest.raises(DatasetError, match=f'image {re.escape(str(bad))} (is empty|cannot be read)'):
        check_seg_dataset(dataset, num_classes=150)
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        segment_image(str(ROOT / UPERNET.config), str(tmp_path / 'any.pth'), str(bad), tmp_path / 'mask.png')


def test_decoding_reads_an_evenly_spread_sample_and_says_so(tmp_path, monkeypatch):
    """A broken label map between the sampled ones passes the sampled check (the log says it was a
    sample) and is caught when every file is decoded (``sample=None``, the tools' ``--check-all-files``)."""
    import lape_mm.datasets as datasets
    root, dataset = _tiny_ade(tmp_path, num_train=5)
    logged = []
    monkeypatch.setattr(datasets, 'print_log', lambda msg, logger=None, level=logging.INFO: logged.append(msg))
    second = sorted((root / 'annotations/training').glob('*.png'))[1]
    Image.fromarray(np.full((4, 4), 1, np.uint8)).save(second)  # of another size than its image
    check_seg_dataset(dataset, num_classes=150, sample=3)  # of 5 pairs: the 1st, 3rd and 5th
    assert logged == [f'data check: decoded 3 of the 5 image/label pairs in {root}/images/training, evenly spread '
                      f'(every file is checked for being empty; --check-all-files, or DataCheckHook(sample=None), '
                      f'decodes every one)']
    with pytest.raises(DatasetError, match=re.escape(str(second))):
        check_seg_dataset(dataset, num_classes=150, sample=None)


def test_check_all_files_decodes_every_file_through_the_tools(tmp_path, capsys):
    """``--check-all-files`` sets the config's DataCheckHook to decode every file, over a sample set in the config."""
    root = make_tiny_ade(tmp_path, num_train=5, num_val=1)
    second = sorted((root / 'annotations/training').glob('*.png'))[1]  # not among the 3 of 5 decoded
    Image.fromarray(np.full((4, 4), 1, np.uint8)).save(second)  # of another size than its image
    config = derived_config(tmp_path, "custom_hooks = [hook for hook in _base_.custom_hooks if hook['type'] != "
                                      "'DataCheckHook'] + [dict(type='DataCheckHook', sample=3)]\n")
    code, err = run_tool_here(capsys, 'train', config, '--work-dir', str(tmp_path / 'work'), '--check-all-files',
                              '--cfg-options', f'train_dataloader.dataset.data_root={root}',
                              f'val_dataloader.dataset.data_root={root}')
    assert_one_line_usage_error(code, err, str(second))


def test_a_missing_data_folder_or_annotation_file_is_named_when_the_library_builds_the_dataset(tmp_path):
    """Before any hook runs: mmseg, mmdet and mmpretrain list their files when they build the dataset, and
    name what is missing (the tools print a FileNotFoundError as one line)."""
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / 'nowhere/images/training'))):
        _ade(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / 'annotations/instances_val2017.json'))):
        _coco(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / 'train'))):
        _imagenet(tmp_path, 'train')


# --- COCO: the annotation file whole, the images it lists ------------------------------------------

def _coco_copy(tiny_coco, tmp_path, edit):
    """The tiny COCO set with its val json edited by ``edit(coco)``, as mmdet builds it."""
    root = tmp_path / 'coco'
    shutil.copytree(tiny_coco, root)
    ann_file = root / 'annotations/instances_val2017.json'
    coco = json.loads(ann_file.read_text())
    edit(coco)
    ann_file.write_text(json.dumps(coco))
    return _coco(root)


def _set_first(key, value):
    return lambda coco: coco['annotations'][0].update({key: value})


@pytest.mark.parametrize('edit, message', [
    (_set_first('category_id', 2), r'annotation \d+ in .*instances_val2017\.json has category_id 2, which is not in '
                                   r'"categories" \(ids \[1, 3, 16, 18\]\)'),
    (_set_first('bbox', [1000.0, 10.0, 40.0, 20.0]),
     r'annotation \d+ in .*instances_val2017\.json has box \[x, y, w, h\] = \[1000\.0, .* outside its image '
     r'000000000004\.jpg'),
    (_set_first('bbox', [-5.0, 10.0, 40.0, 20.0]), 'outside its image'),
    (_set_first('bbox', [50.0, 10.0, -40.0, 20.0]), r'box \[x, y, w, h\] = \[50\.0, 10\.0, -40\.0, 20\.0\] of negative '
                                                    r'width or height, which mmdet drops'),
    (_set_first('bbox', [50.0, 40.0, 40.0, -20.0]), 'of negative width or height'),
    (lambda coco: coco.update(annotations=[]), r'instances_val2017\.json has no annotations'),
    (lambda coco: coco.pop('annotations'), r'instances_val2017\.json has no annotations'),
])
def test_inconsistent_coco_annotations_are_refused(tiny_coco, tmp_path, edit, message):
    dataset = _coco_copy(tiny_coco, tmp_path, edit)
    with pytest.raises(DatasetError, match=message):
        check_coco_dataset(dataset)


def test_coco_image_list_without_annotations_passes_for_testing(tiny_coco, tmp_path):
    check_coco_dataset(_coco_copy(tiny_coco, tmp_path, lambda coco: coco.pop('annotations')), labelled=False)


# --- files outside the decoded sample: listed, present and not empty, all of them --------------------

@pytest.mark.parametrize('case', ['empty label map', 'missing COCO image', 'empty COCO image'])
def test_files_outside_the_decoded_sample_are_checked(tmp_path, case):
    """Sample 1 decodes the first file only; the broken one is the last."""
    if case == 'empty label map':
        root, dataset = _tiny_ade(tmp_path)
        bad = sorted((root / 'annotations/training').glob('*.png'))[-1]
        message = f'label map {bad} is empty'
    else:
        root = make_tiny_coco(tmp_path, num_train=3, num_val=1, seed=2)
        dataset = _coco(root, 'annotations/instances_train2017.json', 'train2017/')
        bad = sorted((root / 'train2017').glob('*.jpg'))[-1]
        message = (f'1 images listed in {dataset.ann_file} are not in {root}/train2017/ (e.g. [\'{bad}\'])'
                   if case == 'missing COCO image' else f'image {bad} is empty')
    check_dataset(dataset, len(dataset.metainfo['classes']), sample=1)
    bad.unlink() if case == 'missing COCO image' else bad.write_bytes(b'')
    with pytest.raises(DatasetError, match=re.escape(message)):
        check_dataset(dataset, len(dataset.metainfo['classes']), sample=1)


def test_an_empty_imagenet_image_is_named(tmp_path):
    root = make_tiny_imagenet(tmp_path, train_per_class=2, val_per_class=1, num_classes=2)
    empty = sorted((root / 'train').rglob('*.JPEG'))[1]
    empty.write_bytes(b'')
    with pytest.raises(DatasetError, match=f'image {re.escape(str(empty))} is empty'):
        check_dataset(_imagenet(root, 'train'), num_classes=2, sample=1)


# --- classes: the model's, and the same in training and validation -----------------------------------

def test_class_folders_beyond_the_model_head_are_refused(tmp_path):
    root = make_tiny_imagenet(tmp_path, train_per_class=1, val_per_class=1, num_classes=3)
    check_dataset(_imagenet(root, 'train'), num_classes=3)
    shutil.copytree(root / 'train/n00000002', root / 'train/n00000003')
    with pytest.raises(DatasetError, match=re.escape(f"{root}/train has 4 classes ['n00000000', 'n00000001', "
                                                     f"'n00000002', 'n00000003'] but the model predicts 3: set the "
                                                     f"head's num_classes to 4")):
        check_dataset(_imagenet(root, 'train'), num_classes=3)


def test_class_folders_for_training_and_a_list_file_for_validation_pass(tmp_path):
    """ImageNet's own layout: the classes are the config's (metainfo) for both, not the folder names."""
    root = make_tiny_imagenet(tmp_path, train_per_class=1, val_per_class=1, num_classes=3)
    (root / 'val.txt').write_text(''.join(f'{image.relative_to(root / "val")} {label}\n' for label, folder in
                                          enumerate(sorted((root / 'val').iterdir())) for image in folder.iterdir()))
    common = dict(type='CustomDataset', data_root=str(root), metainfo=dict(classes=('red', 'green', 'blue')))
    train = build_dataset(dict(common, data_prefix='train'), 'mmpretrain')
    val = build_dataset(dict(common, data_prefix='val', ann_file='val.txt'), 'mmpretrain')
    check_same_classes(train, val)
    check_dataset(val, num_classes=3)


@pytest.mark.parametrize('config, num_classes', [(UPERNET.config, 150), (MASK_RCNN.config, 4), (DEIT.config, 10)])
def test_the_class_count_is_read_from_the_model_head(config, num_classes):
    cfg = Config.fromfile(ROOT / config)
    scope = cfg.default_scope
    assert data_check_hook.model_num_classes(build_model(cfg.model, scope)) == num_classes


# --- the hook, in mmengine's Runner ------------------------------------------------------------------

class _Stop(Exception):
    pass


class _StopBeforeTraining(Hook):
    """Ends ``runner.train()`` where training would start: after every ``before_run`` and weight loading."""

    def before_train(self, runner) -> None:
        raise _Stop


def _runner(run, options: dict, tmp_path, sample=SAMPLED_FILES) -> Runner:
    """``run``'s config with ``options``, its DataCheckHook decoding ``sample`` files, and a hook that ends
    ``runner.train()`` where the first iteration would start."""
    cfg = Config.fromfile(ROOT / run.config)
    cfg.merge_from_dict({key: str(v) if isinstance(v, Path) else v for key, v in options.items()})
    cfg.work_dir = str(tmp_path / 'work')
    cfg.custom_hooks = [*(hook for hook in cfg.get('custom_hooks', []) if hook['type'] != 'DataCheckHook'),
                        dict(type='DataCheckHook', sample=sample)]
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_StopBeforeTraining())
    return runner


def test_the_hook_checks_the_training_data_before_training(tmp_path):
    """The tiny config's data pass, up to where training would start; an empty label map outside the
    decoded sample stops a run before its first iteration."""
    root = make_tiny_ade(tmp_path / 'ade', num_train=5, num_val=1)
    with pytest.raises(_Stop):
        _runner(UPERNET, seg_options(root, **UPERNET_LAYERS), tmp_path / 'good', sample=3).train()
    empty = sorted((root / 'annotations/training').glob('*.png'))[1]  # not among the 3 of 5 decoded
    empty.write_bytes(b'')
    runner = _runner(UPERNET, seg_options(root, **UPERNET_LAYERS), tmp_path / 'bad', sample=3)
    with pytest.raises(DatasetError, match=f'label map {re.escape(str(empty))} is empty'):
        runner.train()
    assert runner.iter == 0 and not list((tmp_path / 'bad/work').glob('*.pth'))


def test_the_hook_checks_the_test_data_before_loading_the_checkpoint(tmp_path):
    root = make_tiny_ade(tmp_path / 'ade', num_train=1, num_val=2)
    empty = sorted((root / 'images/validation').glob('*.jpg'))[-1]
    empty.write_bytes(b'')
    runner = _runner(UPERNET, {**seg_options(root, **UPERNET_LAYERS), 'load_from': str(tmp_path / 'none.pth')},
                     tmp_path)
    with pytest.raises(DatasetError, match=f'image {re.escape(str(empty))} is empty'):
        runner.test()


def test_the_hook_refuses_a_validation_set_missing_a_class_folder(tmp_path):
    """mmpretrain's CustomDataset numbers the class folders it finds: without n00000001 in val, val's
    n00000002 images would be scored as class 1 (top-1 0.00, exit 0)."""
    root = make_tiny_imagenet(tmp_path / 'imagenet', train_per_class=1, val_per_class=1)
    shutil.rmtree(root / 'val/n00000001')
    runner = _runner(DEIT, cls_options(root, **{'model.backbone.num_layers': 1}), tmp_path)
    with pytest.raises(DatasetError, match=re.escape(
            f'the validation set {root}/val has 9 classes [\'n00000000\', \'n00000002\', ') + '.*' + re.escape(
            f'but the training set {root}/train has 10 classes [\'n00000000\', \'n00000001\', ') + '.*' + re.escape(
            "(missing in validation: ['n00000001'], only in validation: []): labels are numbered by position")):
        runner.train()


@pytest.mark.slow
def test_both_processes_of_a_two_process_run_stop_on_bad_data(tmp_path):
    """tools/dist_train.sh CONFIG 2 on CPU: rank 0 finds the empty label map, and rank 1 raises the same
    error instead of waiting for it in the first collective."""
    root = make_tiny_ade(tmp_path / 'ade', num_train=4, num_val=1)
    empty = sorted((root / 'annotations/training').glob('*.png'))[1]
    empty.write_bytes(b'')
    proc = run_process(tool_command('tools/dist_train.sh', UPERNET.config, '2', '--work-dir', str(tmp_path / 'work'),
                                    *cfg_options(UPERNET.options(root))), timeout=300,
                       env={'PYTHON': sys.executable, 'PORT': str(free_port()), 'OMP_NUM_THREADS': '1',
                            'CUDA_VISIBLE_DEVICES': ''})
    # (each rank prints its line; the two writes to the shared stderr can interleave)
    assert proc.returncode != 0 and proc.stderr.count(f'error: label map {empty} is empty') == 2, proc.stderr[-3000:]


def test_only_rank_0_reads_the_files_and_every_rank_raises(monkeypatch):
    """Rank 1 waits for rank 0's outcome (broadcast) and raises the same error, without reading a file."""
    def broadcast_of_rank_0(message, src=0):
        message[0] = 'label map x.png is empty (0 bytes)'
    monkeypatch.setattr(data_check_hook, 'is_main_process', lambda: False)
    monkeypatch.setattr(data_check_hook, 'broadcast_object_list', broadcast_of_rank_0)
    monkeypatch.setattr(DataCheckHook, 'check', lambda self, runner: pytest.fail('rank 1 read the files'))
    with pytest.raises(DatasetError, match=r'label map x\.png is empty \(0 bytes\)'):
        DataCheckHook().before_run(runner=None)
