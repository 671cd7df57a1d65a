"""Nothing a user has is destroyed. tools/infer.py's output never empties an existing file or
the input image and is written in its extension's format; the tiny data makers refuse folders holding
other files; ``reproduce.py --quick`` keeps off the committed results."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lape_mm.apis import output_format, save_colour_mask, save_image
from tools.tiny_data.ade import OBJECT_CLASSES

from conftest import ROOT, assert_one_line_usage_error, run_tool_here, tiny_vit_kwargs
from helpers.tiny_runs import TINY_SEG as TINY

PALETTE = [[(37 * i) % 256, (91 * i) % 256, (53 * i) % 256] for i in range(151)]


def _label() -> np.ndarray:
    label = np.zeros((32, 48), np.uint8)
    label[8:, :20], label[:, 30:] = 4, OBJECT_CLASSES[3][1]  # 150, the highest ADE20K id
    return label


# --- tools/infer.py --out ------------------------------------------------------------------------------

def test_png_masks_keep_class_ids_and_lossy_formats_get_the_colours(tmp_path):
    label = _label()
    save_colour_mask(label, PALETTE, tmp_path / 'mask.png')
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'mask.png')), label)
    colours = np.asarray(PALETTE, np.uint8)[label]
    for name in ('mask.jpg', 'mask.webp'):
        (tmp_path / name).write_bytes(b'an earlier result')  # replaced, as --out asks
        save_colour_mask(label, PALETTE, tmp_path / name)
        written = np.asarray(Image.open(tmp_path / name).convert('RGB')).astype(int)
        assert np.abs(written - colours).mean() < 4, name  # the colours, up to lossy compression
    assert sorted(p.name for p in tmp_path.iterdir()) == ['mask.jpg', 'mask.png', 'mask.webp']


def test_a_failed_write_leaves_the_existing_file_whole(tmp_path):
    out = tmp_path / 'result.jpg'
    out.write_bytes(b'the photo the user had')
    with pytest.raises(OSError, match='cannot write mode I;16 as JPEG'):
        save_image(Image.new('I;16', (8, 8)), out)
    assert out.read_bytes() == b'the photo the user had' and [p.name for p in tmp_path.iterdir()] == ['result.jpg']


def test_outputs_without_extension_or_over_the_input_are_refused(tmp_path):
    image = tmp_path / 'photo.jpg'
    Image.new('RGB', (8, 8)).save(image)
    with pytest.raises(ValueError, match='has no extension: name it .png'):
        output_format(tmp_path / 'mask')
    with pytest.raises(ValueError, match='cannot write .xyz images'):
        output_format(tmp_path / 'mask.xyz')
    with pytest.raises(ValueError, match='is the input image'):
        output_format(tmp_path / '.' / 'photo.jpg', image)
    assert output_format(tmp_path / 'mask.PNG') == 'PNG' and output_format(tmp_path / 'm.webp') == 'WEBP'


@pytest.mark.parametrize('out, message', [('mask', 'has no extension'), ('photo.jpg', 'is the input image')])
def test_infer_refuses_such_outputs_before_running(capsys, tmp_path, out, message):
    image = tmp_path / 'photo.jpg'
    Image.new('RGB', (64, 64), (200, 10, 10)).save(image)
    before = image.read_bytes()
    code, err = run_tool_here(capsys, 'infer', str(ROOT / TINY), str(tmp_path / 'none.pth'), str(image),
                              '--out', str(tmp_path / out))
    assert_one_line_usage_error(code, err, '--out:', message)
    assert image.read_bytes() == before


# --- tools/make_tiny_*.py OUT ------------------------------------------------------------------------------

def _make(capsys, kind: str, out, *args: str) -> tuple[int, str]:
    return run_tool_here(capsys, f'make_tiny_{kind}', str(out), '--train', '1', '--val', '1', *args)


@pytest.mark.parametrize('kind, user_file', [
    ('ade', 'ADEChallengeData2016/images/training/ADE_train_00000001.jpg'),
    ('coco', 'annotations/instances_train2017.json'),
    ('imagenet', 'train/n00000000/mine.JPEG'),
])
def test_tiny_makers_refuse_a_folder_of_other_files(capsys, tmp_path, kind, user_file):
    mine = tmp_path / user_file
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b'the user\'s own file')
    code, err = _make(capsys, kind, tmp_path)
    assert_one_line_usage_error(code, err, f'{tmp_path} is not empty', '--force')
    assert mine.read_bytes() == b'the user\'s own file' and len(list(tmp_path.rglob('*.*'))) == 1
    assert _make(capsys, kind, tmp_path, '--force')[0] == 0
    assert not mine.exists() or mine.read_bytes() != b'the user\'s own file'


def test_tiny_makers_replace_their_own_set_and_refuse_another_kind(capsys, tmp_path):
    assert run_tool_here(capsys, 'make_tiny_coco', str(tmp_path), '--train', '3', '--val', '1')[0] == 0
    assert _make(capsys, 'coco', tmp_path)[0] == 0  # a new, smaller set: nothing of the old one left
    assert len(list((tmp_path / 'train2017').iterdir())) == 1
    assert len(json.loads((tmp_path / 'annotations/instances_train2017.json').read_text())['images']) == 1
    code, err = _make(capsys, 'ade', tmp_path)
    assert_one_line_usage_error(code, err, 'it holds a tiny coco set')


@pytest.mark.parametrize('kind, own', [('ade', 'ADEChallengeData2016/images/training'), ('coco', 'train2017'),
                                       ('imagenet', 'train/n00000000')])
def test_tiny_makers_replace_only_their_own_files(capsys, tmp_path, kind, own):
    assert run_tool_here(capsys, f'make_tiny_{kind}', str(tmp_path), '--train', '3', '--val', '1')[0] == 0
    (tmp_path / 'notes.txt').write_text('the user\'s notes')
    (tmp_path / 'work_dirs').mkdir()
    (tmp_path / 'work_dirs/iter_100.pth').write_bytes(b'a checkpoint')
    assert _make(capsys, kind, tmp_path)[0] == 0  # again, smaller: the earlier set's extra files go
    assert len(list((tmp_path / own).iterdir())) == 1
    assert (tmp_path / 'notes.txt').read_text() == 'the user\'s notes'
    assert (tmp_path / 'work_dirs/iter_100.pth').read_bytes() == b'a checkpoint'


@pytest.mark.parametrize('option', ['--train', '--val', '--seed'])
def test_tiny_makers_refuse_negative_counts_and_seeds(capsys, tmp_path, option):
    code, err = run_tool_here(capsys, 'make_tiny_ade', str(tmp_path / 'new'), option, '-1')
    assert_one_line_usage_error(code, err, f'argument {option}: must be >= 0, got -1')
    assert not (tmp_path / 'new').exists()


# --- tools/reproduce.py --quick ----------------------------------------------------------------------------

def test_reproduce_quick_writes_to_a_work_dir(monkeypatch, capsys, tmp_path):
    written = []
    monkeypatch.setattr('tools.study.reproduce', lambda out, config: written.append(out) or 'report')
    monkeypatch.chdir(tmp_path)
    assert run_tool_here(capsys, 'reproduce', '--quick')[0] == 0
    assert written == ['work_dirs/reproduce_quick']
    results = str(ROOT / 'docs/figures/reproduction')
    code, err = run_tool_here(capsys, 'reproduce', '--quick', '--out', results)
    assert_one_line_usage_error(code, err, '--quick would replace the committed results')
    assert written == ['work_dirs/reproduce_quick']



def test_reproduce_deep_quick_writes_to_its_own_work_dir(monkeypatch, capsys, tmp_path):
    written = []
    monkeypatch.setattr('tools.study.reproduce_deep', lambda out, config: written.append(out) or 'report')
    monkeypatch.chdir(tmp_path)
    assert run_tool_here(capsys, 'reproduce', '--study', 'deep', '--quick')[0] == 0
    assert written == ['work_dirs/reproduce_deep_quick']
    code, err = run_tool_here(capsys, 'reproduce', '--study', 'deep', '--quick', '--out',
                              str(ROOT / 'docs/figures/reproduction_deep'))
    assert_one_line_usage_error(code, err, '--quick would replace the committed results')
    assert written == ['work_dirs/reproduce_deep_quick']

# --- tools/test.py --out DIR ------------------------------------------------------------------------------

def _test_out(capsys, tmp_path, data_root, out, config: str = TINY) -> tuple[int, str]:
    checkpoint = tmp_path / 'iter_4.pth'
    checkpoint.write_bytes(b'refused before it is read')
    return run_tool_here(capsys, 'test', str(ROOT / config), str(checkpoint), '--out', str(out), '--work-dir',
                         str(tmp_path / 'work'), '--cfg-options', f'test_dataloader.dataset.data_root={data_root}')


@pytest.mark.parametrize('folder', ['annotations/validation', 'images/validation', '.', 'annotations/validation/new'])
def test_tools_test_refuses_to_write_predictions_into_its_dataset(capsys, tmp_path, tiny_ade, folder):
    labels = {p: p.read_bytes() for p in (tiny_ade / 'annotations/validation').iterdir()}
    code, err = _test_out(capsys, tmp_path, tiny_ade, tiny_ade / folder)
    assert_one_line_usage_error(code, err, 'lies in the dataset folder', 'give a folder outside it')
    assert {p: p.read_bytes() for p in (tiny_ade / 'annotations/validation').iterdir()} == labels
    assert not (tiny_ade / 'annotations/validation/new').exists()


def test_tools_test_refuses_a_folder_of_other_files(capsys, tmp_path, tiny_ade):
    out = tmp_path / 'mine'
    out.mkdir()
    (out / 'ADE_val_00000001.png').write_bytes(b'a label map of the user')  # not marked: not ours
    code, err = _test_out(capsys, tmp_path, tiny_ade, out)
    assert_one_line_usage_error(code, err, f'--out {out} holds files tools/test.py did not write')
    assert (out / 'ADE_val_00000001.png').read_bytes() == b'a label map of the user'


def test_prediction_folders_are_new_empty_or_written_by_an_earlier_run(tmp_path):
    from tools.outputs import PREDICTIONS_MARKER, claim_prediction_folder
    dataset = [tmp_path / 'data']
    claim_prediction_folder(tmp_path / 'new/preds', dataset)  # made, and marked
    assert [p.name for p in (tmp_path / 'new/preds').iterdir()] == [PREDICTIONS_MARKER]
    (tmp_path / 'new/preds/ADE_val_00000001.png').write_bytes(b'a prediction')
    claim_prediction_folder(tmp_path / 'new/preds', dataset)  # its own PNGs: written again
    (tmp_path / 'new/preds/notes.txt').write_text('the user\'s')
    with pytest.raises(FileExistsError, match=r"holds files tools/test.py did not write \(e.g. \['notes.txt'\]\)"):
        claim_prediction_folder(tmp_path / 'new/preds', dataset)
    (tmp_path / 'empty').mkdir()
    claim_prediction_folder(tmp_path / 'empty', dataset)
    (tmp_path / 'file').write_text('')
    with pytest.raises(FileExistsError, match='is a file'):
        claim_prediction_folder(tmp_path / 'file', dataset)


def test_dataset_folders_of_a_config_include_wrapped_datasets():
    from tools.outputs import dataset_folders
    cfg = dict(train_dataloader=dict(dataset=dict(type='RepeatDataset', dataset=dict(
                   data_root='d', data_prefix=dict(img_path='images/training', seg_map_path='ann/training')))),
               val_dataloader=dict(dataset=dict(data_root='', data_prefix='val')),  # mmpretrain: a str prefix
               test_dataloader=None)
    assert dataset_folders(cfg) == [Path('d'), Path('d/images/training'), Path('d/ann/training'), Path('val')]


# --- no tool writes over a file it reads ------------------------------------------------------------------

def test_export_onnx_refuses_to_write_over_its_checkpoint(capsys, tmp_path):
    checkpoint = tmp_path / 'mine.pth'
    checkpoint.write_bytes(b'110 MB of training')
    code, err = run_tool_here(capsys, 'export_onnx', str(ROOT / TINY), str(checkpoint), '--backbone-only',
                              '--out', str(tmp_path / '.' / 'mine.pth'))
    assert_one_line_usage_error(code, err, 'is the checkpoint this tool reads')
    assert checkpoint.read_bytes() == b'110 MB of training'


def test_convert_checkpoint_refuses_its_source_and_a_folder(capsys, tmp_path):
    from lape_mm import LaPEViT
    source = tmp_path / 'vit.pth'
    torch.save({'state_dict': LaPEViT(**tiny_vit_kwargs()).state_dict()}, source)
    before = source.read_bytes()
    code, err = run_tool_here(capsys, 'convert_checkpoint', str(source), str(source))
    assert_one_line_usage_error(code, err, 'is the source checkpoint SRC this tool reads')
    code, err = run_tool_here(capsys, 'convert_checkpoint', str(source), str(tmp_path))
    assert_one_line_usage_error(code, err, f'DST {tmp_path} is a folder')
    assert source.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ['vit.pth']


@pytest.mark.parametrize('out, message', [('none.pth', '--out {} is the checkpoint this tool reads'),
                                          ('folder', '--out {} is a folder'),
                                          ('mask.xbm', 'cannot write .xbm images')])
def test_infer_refuses_outputs_it_could_not_or_must_not_write(capsys, tmp_path, out, message):
    image, checkpoint = tmp_path / 'photo.jpg', tmp_path / 'none.pth'
    Image.new('RGB', (64, 64)).save(image)
    checkpoint.write_bytes(b'weights')
    (tmp_path / 'folder').mkdir()
    code, err = run_tool_here(capsys, 'infer', str(ROOT / TINY), str(checkpoint), str(image),
                              '--out', str(tmp_path / out))
    assert_one_line_usage_error(code, err, message.format(tmp_path / out))
    assert checkpoint.read_bytes() == b'weights' and not (tmp_path / 'mask.xbm').exists()
