"""Issue 12: nothing lost, nothing silent. Killed saves, shared work dirs, checkpoints that do not fit,
bad checkpoint and image files, and valid data that must pass the checks."""
import argparse
import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from lape_mm import LaPEViT
from lape_mm.checkpoint import CheckpointError, load_weights_only, safe_load
from tools.tiny_data import make_tiny_ade
from tools.launch import check_pretrained

from conftest import ROOT, build_model, kill_process_group, run_process, run_tool, tiny_vit_kwargs
from tiny_runs import TINY_SEG as TINY, derived_config, hook_config, hook_env, small_run_options

# --- bad checkpoint files: one named error that says what is wrong with which file ---------------

BAD_FILES = {
    'empty': (lambda good: b'', 'empty'),
    'truncated': (lambda good: good[:len(good) // 2], 'truncated'),
    'random bytes': (lambda good: np.random.default_rng(0).bytes(4096), 'not a checkpoint'),
}


@pytest.fixture
def bad_checkpoint(tmp_path, request):
    """A checkpoint file broken in the way ``request.param`` names; returns (path, expected words)."""
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': LaPEViT(**tiny_vit_kwargs()).state_dict()}, good)
    make_bytes, words = BAD_FILES[request.param]
    path = tmp_path / f'{request.param.replace(" ", "_")}.pth'
    path.write_bytes(make_bytes(good.read_bytes()))
    return path, words


@pytest.mark.parametrize('bad_checkpoint', sorted(BAD_FILES), indirect=True)
def test_bad_checkpoint_files_raise_checkpoint_error_naming_file_and_problem(bad_checkpoint):
    path, words = bad_checkpoint
    for load in (safe_load, load_weights_only):  # a local file, and any source lape_mm and its tools read
        with pytest.raises(CheckpointError, match=f'{re.escape(str(path))}.*{words}'):
            load(str(path))
    backbone = LaPEViT(**tiny_vit_kwargs(), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        backbone.init_weights()


class _Hyperparameters:
    def __init__(self):
        self.lr = 5e-4


def _deit_main_checkpoint(args: argparse.Namespace) -> dict:
    """What the LaPE authors' DeiT ``main.py`` saves."""
    model = LaPEViT(**tiny_vit_kwargs())
    weights = model.state_dict()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    return {'model': weights, 'optimizer': optimizer.state_dict(), 'lr_scheduler': {'base_lr': 5e-4, 't_initial': 300},
            'epoch': 299, 'model_ema': weights, 'scaler': {'scale': 65536.0, 'growth_factor': 2.0}, 'args': args}


def test_deit_main_checkpoint_with_namespace_args_loads_weights_only(tmp_path):
    args = argparse.Namespace(model='lape_deit_tiny_patch16_224', batch_size=256, lr=5e-4, smoothing=0.1,
                              pin_mem=True, finetune='', resume=None, milestones=[30, 60], drop_path=0.1)
    path = tmp_path / 'checkpoint.pth'
    torch.save(_deit_main_checkpoint(args), path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        pass  # as timm's loaders do: leaving the block drops Namespace from the process-wide allowlist
    loaded = safe_load(path)
    assert isinstance(loaded['args'], argparse.Namespace) and vars(loaded['args']) == vars(args)
    assert loaded['epoch'] == 299 and torch.equal(loaded['model']['pos_embed'], loaded['model_ema']['pos_embed'])


@pytest.mark.parametrize('payload', [_Hyperparameters(), argparse.Namespace(lr=5e-4, config=_Hyperparameters())])
def test_pickles_of_other_classes_are_still_refused_without_unsafe_advice(tmp_path, payload):
    path = tmp_path / 'checkpoint.pth'
    torch.save({**_deit_main_checkpoint(argparse.Namespace()), 'args': payload}, path)
    with pytest.raises(CheckpointError, match='refused to load .*_Hyperparameters') as err:
        safe_load(path)
    assert 'weights_only' not in str(err.value) and 'add_safe_globals' not in str(err.value)


# --- checkpoints that do not fit: evaluation, inference and resume load strictly ------------------

def _tiny_seg_cfg() -> Config:
    cfg = Config.fromfile(ROOT / TINY)
    cfg.model.backbone.num_layers = 4
    cfg.model.backbone.out_indices = (0, 1, 2, 3)
    return cfg


def _segmentor_weights(cfg: Config) -> dict:
    return build_model(cfg.model, 'mmseg').state_dict()


def test_inference_refuses_checkpoint_that_does_not_fit(tmp_path, tiny_ade):
    from lape_mm.apis import segment_image
    cfg = _tiny_seg_cfg()
    config = tmp_path / 'config.py'
    cfg.dump(config)
    weights = _segmentor_weights(cfg)
    backbone_only = tmp_path / 'backbone.pth'
    torch.save({'state_dict': {k: v for k, v in weights.items() if k.startswith('backbone.')}}, backbone_only)
    image = next((tiny_ade / 'images/validation').glob('*.jpg'))
    with pytest.raises(CheckpointError, match=r'backbone\.pth does not fit the model:\n\s+\d+ model keys missing from '
                                              r'the checkpoint \(neck: \d+, decode_head: \d+, auxiliary_head: \d+\)'):
        segment_image(str(config), str(backbone_only), str(image), tmp_path / 'mask.png', device='cpu')
    assert not (tmp_path / 'mask.png').exists()


@pytest.mark.slow
def test_tools_test_refuses_checkpoint_without_pos_embed(tiny_ade, tmp_path):
    weights = _segmentor_weights(_tiny_seg_cfg())
    checkpoint = tmp_path / 'no_pe.pth'
    torch.save({'state_dict': {k: v for k, v in weights.items() if k != 'backbone.pos_embed'}}, checkpoint)
    proc = run_process([sys.executable, 'tools/test.py', TINY, str(checkpoint), '--work-dir', str(tmp_path / 'w'),
                        *small_run_options(tiny_ade)])
    assert proc.returncode != 0 and not re.search(r'mIoU: [\d.]+', proc.stdout + proc.stderr)
    assert re.search(r'test\.py: error: checkpoint .*no_pe\.pth does not fit the model: 1 model keys missing '
                     r'from the checkpoint \(backbone: 1\): backbone\.pos_embed', proc.stderr), proc.stderr[-3000:]


@pytest.mark.slow
def test_resume_from_a_pretraining_checkpoint_says_it_is_not_of_this_config(tiny_ade, tmp_path):
    """--resume of a segmentation config given what configs/pretrain writes: classifier weights, one AdamW
    parameter group, mmengine's run state."""
    from mmengine.logging import MessageHub
    backbone = LaPEViT(**tiny_vit_kwargs())
    classifier = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    classifier['head.layers.head.weight'] = torch.zeros(10, 64)
    checkpoint = tmp_path / 'epoch_4.pth'
    torch.save({'state_dict': classifier, 'optimizer': torch.optim.AdamW(backbone.parameters()).state_dict(),
                'message_hub': MessageHub.get_instance('pretrain').state_dict(),
                'meta': {'epoch': 4, 'iter': 52}}, checkpoint)
    proc = run_process([sys.executable, 'tools/train.py', TINY, '--work-dir', str(tmp_path / 'w'),
                        '--resume', str(checkpoint), *small_run_options(tiny_ade)])
    assert proc.returncode != 0
    assert 'parameter groups' not in proc.stderr
    assert re.search(r'(?s)epoch_4\.pth does not fit the model.*it is not a checkpoint of this config.*init_cfg.*'
                     r'load_from', proc.stderr), proc.stderr[-3000:]


# --- killed saves, stale records, shared work dirs -------------------------------------------------

def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _complete_checkpoints(work: Path) -> list[str]:
    return sorted(p.name for p in work.glob('iter_*.pth'))


@pytest.mark.slow
@pytest.mark.parametrize('keep', [1, 2])
def test_kill_during_save_loses_no_checkpoint_and_resume_finishes(tiny_ade, tmp_path, keep):
    """SIGKILL while iteration 3's checkpoint is written (one checkpoint per iteration): the kept
    ones survive, --resume cleans the temporary up and finishes."""
    options = small_run_options(tiny_ade, iters=4, ckpt_interval=1, **{
        'default_hooks.checkpoint.max_keep_ckpts': keep, 'train_cfg.val_interval': 100})
    work = tmp_path / 'work'
    killing = hook_config(tmp_path, "dict(type='KillDuringSaveHook', iteration=3)")
    proc = run_process([sys.executable, 'tools/train.py', killing, '--work-dir', str(work), *options], env=hook_env())
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(list(work.glob('.tmp-*iter_3.pth'))) == 1  # killed mid-save
    assert _complete_checkpoints(work) == ['iter_1.pth', 'iter_2.pth'][-keep:]
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
    assert stat.S_IMODE((work / 'iter_2.pth').stat().st_mode) == 0o666 & ~_umask()

    out = run_tool('tools/train.py', TINY, '--work-dir', str(work), '--resume', *options)
    assert 'resumed' in out.lower() and 'iter: 2' in out
    assert not list(work.glob('.tmp-*'))
    assert _complete_checkpoints(work) == ['iter_3.pth', 'iter_4.pth'][-keep:]


def _write_checkpoint(path: Path) -> None:
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'iter': 2}}, path)


def test_resume_skips_stale_or_empty_last_checkpoint_and_temporaries(tmp_path):
    from tools.launch import configure_checkpoints
    work = tmp_path / 'work'
    work.mkdir()
    _write_checkpoint(work / 'iter_2.pth')
    (work / '.tmp-abc123iter_4.pth').write_bytes((work / 'iter_2.pth').read_bytes()[:100])
    for recorded in ('', str(work / 'iter_4.pth')):  # empty; names a deleted file
        (work / 'last_checkpoint').write_text(recorded)
        cfg = Config(dict(work_dir=str(work)))
        configure_checkpoints(cfg, 'auto')
        assert cfg.resume and cfg.load_from == str(work / 'iter_2.pth')


def test_resume_with_nothing_to_resume_starts_from_scratch(tmp_path):
    from tools.launch import configure_checkpoints
    (tmp_path / 'last_checkpoint').write_text('')
    cfg = Config(dict(work_dir=str(tmp_path)))
    configure_checkpoints(cfg, 'auto')
    assert not cfg.get('resume') and not cfg.get('load_from')


def test_second_run_on_a_work_dir_is_refused_naming_the_first(tmp_path):
    from lape_mm.engine.work_dir_lock import WorkDirBusyError, lock_work_dir
    lock = lock_work_dir(str(tmp_path))
    with pytest.raises(WorkDirBusyError, match=f'in use by another training run \\(PID {os.getpid()}\\)'):
        lock_work_dir(str(tmp_path))
    lock.close()
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from lape_mm.engine.work_dir_lock import '
                               'lock_work_dir; l = lock_work_dir(sys.argv[1]); print("locked", flush=True); '
                               'time.sleep(60)', str(tmp_path)],
                              cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)}, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(WorkDirBusyError, match=f'PID {holder.pid}'):
            lock_work_dir(str(tmp_path))
    finally:
        kill_process_group(holder)
    assert lock_work_dir(str(tmp_path)) is not None  # a dead holder does not keep the lock


def test_busy_message_names_the_holder_only_while_it_lives(tmp_path):
    """The lock file can name a process that is gone (e.g. the PID of a killed run): it is not named."""
    from lape_mm.engine.work_dir_lock import LOCK_NAME, WorkDirBusyError, lock_work_dir
    dead = subprocess.Popen([sys.executable, '-c', ''])
    dead.wait(timeout=60)
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from lape_mm.engine.work_dir_lock import lock_work_dir; '
                               'l = lock_work_dir(sys.argv[1]); print("locked", flush=True); time.sleep(60)',
                               str(tmp_path)], cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        (tmp_path / LOCK_NAME).write_text(f'{dead.pid}\n')
        with pytest.raises(WorkDirBusyError, match='in use by another training run;') as busy:
            lock_work_dir(str(tmp_path))
        assert str(dead.pid) not in str(busy.value)
    finally:
        holder.kill()
        holder.wait(timeout=60)


@pytest.mark.slow
def test_a_killed_run_with_persistent_workers_frees_its_work_dir_at_once(tiny_ade, tmp_path):
    """SIGKILL a run whose dataloader workers persist (they outlive it by seconds): its work dir is free
    the moment it is dead, and --resume straight away finishes the run."""
    from lape_mm.engine.work_dir_lock import lock_work_dir
    options = small_run_options(tiny_ade, iters=4, ckpt_interval=1, **{
        'train_dataloader.num_workers': 2, 'train_dataloader.persistent_workers': True,
        'train_cfg.val_interval': 100})
    work = tmp_path / 'work'
    killing = hook_config(tmp_path, "dict(type='KillAtIterHook', iteration=3)")
    env = {**os.environ, **hook_env()}
    with open(tmp_path / 'killed.log', 'w') as log:  # not a pipe: the orphaned workers would hold it open
        run = subprocess.Popen([sys.executable, 'tools/train.py', killing, '--work-dir', str(work), *options],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert run.wait(timeout=600) == -signal.SIGKILL, (tmp_path / 'killed.log').read_text()[-3000:]
        lock_work_dir(str(work)).close()  # within milliseconds of its death, while its workers may live
        out = run_tool('tools/train.py', TINY, '--work-dir', str(work), '--resume', *options)
    finally:
        run.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)  # the orphaned workers
    assert 'resumed' in out.lower() and (work / 'iter_4.pth').exists()


@pytest.mark.slow
def test_tools_train_refuses_a_work_dir_held_by_a_live_run(tiny_ade, tmp_path):
    from lape_mm.engine.work_dir_lock import lock_work_dir
    lock = lock_work_dir(str(tmp_path))  # this test process plays the live run
    try:
        proc = run_process([sys.executable, 'tools/train.py', TINY, '--work-dir', str(tmp_path),
                            *small_run_options(tiny_ade)])
    finally:
        lock.close()
    assert proc.returncode != 0 and f'in use by another training run (PID {os.getpid()})' in proc.stderr
    assert not list(tmp_path.glob('*.pth'))


# --- data: the tiny ADE20K set ---------------------------------------------------------------------------

def test_tiny_ade_holds_the_highest_class(tmp_path):
    root = make_tiny_ade(tmp_path, num_train=8, num_val=1, seed=0)
    maps = (root / 'annotations/training').glob('*.png')
    assert {0, 1, 150} <= set().union(*(np.unique(np.asarray(Image.open(p))).tolist() for p in maps))


@pytest.mark.slow
def test_infer_tool_runs_detection_configs(tmp_path):
    from tools.tiny_data.coco import CLASSES, make_tiny_coco
    cfg = Config.fromfile(ROOT / 'configs/mask_rcnn_lape_vit_t_simplefpn_tiny-coco_160.py')
    cfg.model.backbone.update(num_layers=2, global_attn_indexes=(1,))
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # an untrained model still predicts
    config, checkpoint = tmp_path / 'detector.py', tmp_path / 'detector.pth'
    cfg.dump(config)
    torch.save({'state_dict': build_model(cfg.model, 'mmdet').state_dict(), 'meta': {'dataset_meta': {'classes': CLASSES}}},
               checkpoint)
    image = next((make_tiny_coco(tmp_path / 'coco', num_train=1, num_val=1) / 'val2017').glob('*.jpg'))
    out = run_tool('tools/infer.py', str(config), str(checkpoint), str(image), '--out', str(tmp_path / 'det.jpg'))
    assert re.search(r'wrote .*det\.jpg; \d+ detections', out)
    assert Image.open(tmp_path / 'det.jpg').size == Image.open(image).size


# --- small failures ----------------------------------------------------------------------------------

def test_missing_pretrained_error_cites_an_existing_readme_section(tmp_path):
    cfg = _tiny_seg_cfg()
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'missing.pth'))
    with pytest.raises(FileNotFoundError) as err:
        check_pretrained(cfg)
    section = re.search(r'README "([^"]+)"', str(err.value)).group(1)
    assert f'\n## {section}\n' in (ROOT / 'README.md').read_text()


def test_export_onnx_checks_out_folder_before_exporting(tmp_path, monkeypatch):
    import runpy
    out = tmp_path / 'missing' / 'model.onnx'
    monkeypatch.setattr(sys, 'argv', ['export_onnx.py', str(ROOT / TINY), str(tmp_path / 'none.pth'), '--out', str(out)])
    with pytest.raises(SystemExit, match=f'--out folder {re.escape(str(out.parent))} does not exist'):
        runpy.run_path(str(ROOT / 'tools/export_onnx.py'), run_name='__main__')
