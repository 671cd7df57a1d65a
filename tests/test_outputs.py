"""Issue 22: nothing a user has is destroyed. tools/infer.py's output never empties an existing file or
the input image and is written in its extension's format; the tiny data makers refuse folders holding
other files; ``reproduce.py --quick`` keeps off the committed results."""
import json

import numpy as np
import pytest
from PIL import Image

from lape_mm.apis import output_format, save_colour_mask, save_image
from tools.tiny_data.ade import OBJECT_CLASSES

from conftest import ROOT
from tiny_runs import TINY_SEG as TINY
from test_user_errors import assert_one_line_usage_error, run_tool_here

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
