"""tools/cli.py: a mistake a user makes at a tool's command line is one line and exit code 2, without a
traceback (``--debug`` shows it)."""
import os
import re

import pytest
import torch

from lape_mm import LaPEViT

from conftest import ROOT, assert_one_line_usage_error, run_main, run_tool_here, tiny_vit_kwargs
from helpers.tiny_runs import TINY_SEG as TINY, small_run_options


# --- the tools' command line ---------------------------------------------------------------------------

@pytest.mark.parametrize('case', ['checkpoint', 'data', 'model argument', 'cfg-options'])
def test_user_errors_are_one_line_with_exit_code_2(capsys, tmp_path, case):
    config, bad, missing = str(ROOT / TINY), tmp_path / 'bad.pth', tmp_path / 'no_data'
    bad.write_bytes(b'not a checkpoint')
    tool, args, fragments = {
        'checkpoint': ('convert_checkpoint', [str(bad), str(tmp_path / 'o.pth')],  # CheckpointError
                       ['convert_checkpoint.py: error:', str(bad), '--debug shows the traceback']),
        'data': ('test', [config, str(bad), '--work-dir', str(tmp_path),  # mmseg's FileNotFoundError
                          '--cfg-options', f'test_dataloader.dataset.data_root={missing}'],
                 ['test.py: error:', f'{missing}/images/validation']),
        'model argument': ('get_flops', [config, '--shape', '64', '--cfg-options',  # ConfigError
                                         'model.backbone.drop_path_rate=1.0'],
                           ['drop_path_rate must be a number in [0, 1), got 1.0']),
        'cfg-options': ('train', [config, '--cfg-options', 'train_cfg.max_iters'],  # argparse's usage error
                        ["'train_cfg.max_iters' is not KEY=VALUE"]),
    }[case]
    assert_one_line_usage_error(*run_tool_here(capsys, tool, *args), *fragments)


def test_a_busy_work_dir_is_one_line_with_exit_code_2(capsys, tmp_path, tiny_ade):
    """The lock is taken when the run starts (configs/_base_/lape_runtime.py's WorkDirLockHook)."""
    from lape_mm.engine.work_dir_lock import lock_work_dir
    lock = lock_work_dir(str(tmp_path))  # this process plays the live run
    try:
        code, err = run_tool_here(capsys, 'train', str(ROOT / TINY), '--work-dir', str(tmp_path),
                                  *small_run_options(tiny_ade))
    finally:
        lock.close()
    assert_one_line_usage_error(code, err, 'train.py: error:', f'in use by another training run (PID {os.getpid()})')
    assert not list(tmp_path.glob('*.pth'))


def test_debug_shows_the_traceback(capsys, tmp_path):
    from lape_mm.checkpoint import CheckpointError
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'')
    with pytest.raises(CheckpointError, match='empty'):
        run_tool_here(capsys, 'convert_checkpoint', str(bad), str(tmp_path / 'o.pth'), '--debug')


@pytest.mark.parametrize('args, message', [
    (['--img-size', '100'], '--img-size takes H [W], positive multiples of the patch size 16'),
    (['--img-size', '64', '64', '64'], '--img-size takes H [W]'),
    (['--img-size', '64', '--patch-size', '0'], '--patch-size must be positive, got 0'),
    (['--patch-size', '8'], '--patch-size only sets the PE grid of --img-size'),
])
def test_convert_checkpoint_refuses_sizes_it_would_misread(capsys, tmp_path, args, message):
    src = tmp_path / 'vit.pth'
    torch.save({'state_dict': LaPEViT(**tiny_vit_kwargs()).state_dict()}, src)
    code, err = run_tool_here(capsys, 'convert_checkpoint', str(src), str(tmp_path / 'o.pth'), *args)
    assert_one_line_usage_error(code, err, message)
    assert not (tmp_path / 'o.pth').exists()


# --- raw cases that end as one named line -------------------------------------------------------------

DET_TINY = 'configs/mask_rcnn_lape_vit_t_simplefpn_tiny-coco_160.py'


def test_tools_test_names_a_detection_out_that_is_not_a_pickle(capsys, tmp_path):
    checkpoint = tmp_path / 'epoch_1.pth'
    checkpoint.write_bytes(b'refused before it is read')
    code, err = run_tool_here(capsys, 'test', str(ROOT / DET_TINY), str(checkpoint), '--out',
                              str(tmp_path / 'res.json'), '--work-dir', str(tmp_path))
    assert_one_line_usage_error(code, err, '--out for a detection config is a .pkl file', '--out results.pkl')


def test_reproduce_refuses_zero_threads(capsys):
    assert_one_line_usage_error(*run_tool_here(capsys, 'reproduce', '--threads', '0'),
                                'argument --threads: must be >= 1, got 0')


@pytest.mark.parametrize('options, fragments', [
    (['model.backbone.out_indices=3'], ['model.backbone.out_indices=3 gives 1 feature map(s), but model.neck '
                                        '(MultiLevelNeck) takes 4 (in_channels=[192, 192, 192, 192])']),
    (['model.backbone.in_channels=1'], ['expected images [B, 1, H, W], got', 'set in_channels']),
    (['model.backbone.num_heads=5'], ['num_heads=5 does not divide embed_dims=192']),
    (['model.backbone.mlp_ratio=0'], ['mlp_ratio must be a number > 0, got 0']),
])
def test_model_arguments_that_cannot_work_are_one_line(capsys, options, fragments):
    code, err = run_tool_here(capsys, 'get_flops', str(ROOT / TINY), '--shape', '64', '--cfg-options', *options)
    assert_one_line_usage_error(code, err, 'get_flops.py: error:', *fragments)


@pytest.mark.parametrize('config, option, message', [
    (DET_TINY, 'train_cfg.max_iters=100', 'train_cfg.max_iters does not apply here: this config counts its run in '
                                          'epochs (train_cfg.type=EpochBasedTrainLoop); set train_cfg.max_epochs=N'),
    (TINY, 'train_cfg.max_epochs=1', 'train_cfg.max_epochs does not apply here: this config counts its run in '
                                     'iters (train_cfg.type=IterBasedTrainLoop); set train_cfg.max_iters=N'),
    ('configs/pretrain/lape_deit_tiny_tiny-imagenet.py', 'train_cfg.max_iters=5',
     'counts its run in epochs (train_cfg.by_epoch=True); set train_cfg.max_epochs=N'),
    (TINY, 'train_cfg.val_interval=0', 'train_cfg.val_interval must be an integer >= 1, got 0'),
])
def test_schedule_keys_the_loop_cannot_take_are_one_line(capsys, tmp_path, config, option, message):
    code, err = run_tool_here(capsys, 'train', str(ROOT / config), '--work-dir', str(tmp_path), '--cfg-options', option)
    assert_one_line_usage_error(code, err, 'train.py: error:', message)
    assert not list(tmp_path.iterdir())  # refused before the work dir was claimed


def test_slurm_launcher_outside_srun_is_one_line(capsys, monkeypatch, tmp_path):
    for name in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        monkeypatch.delenv(name, raising=False)
    code, err = run_tool_here(capsys, 'train', str(ROOT / TINY), '--launcher', 'slurm', '--work-dir', str(tmp_path))
    assert_one_line_usage_error(code, err, 'SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST is not set: start the job '
                                           'with srun')


def test_convert_tool_names_a_bad_file(tmp_path, capsys):
    """One line naming the file and the problem (tools/cli.py: exit code 2, no traceback)."""
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'')
    with pytest.raises(SystemExit) as exit_:
        run_main('tools/convert_checkpoint.py', str(bad), str(tmp_path / 'out.pth'))
    assert exit_.value.code == 2
    assert re.fullmatch(rf'convert_checkpoint\.py: error: .*{re.escape(str(bad))}.*empty.*\n', capsys.readouterr().err)
    assert not (tmp_path / 'out.pth').exists()
