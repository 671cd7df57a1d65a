"""Issue 22: arguments that were accepted and ignored or misread are named errors, and a mistake a user
makes at a tool's command line is one line and exit code 2, without a traceback (``--debug`` shows it)."""
import logging
import os

import pytest
import torch

from lape_mm import LaPEViT
from lape_mm.errors import ConfigError
from tools.launch import enable_amp, fit_schedule, load_config

from conftest import ROOT, run_main, tiny_vit_kwargs
from tiny_runs import TINY_SEG as TINY, small_run_options
from test_vit_adapter import tiny_adapter

ADAPTER_TINY = 'configs/upernet_lape_vit_adapter_t_tiny-ade_128x128.py'  # its adapter norms are SyncBN


def run_tool_here(capsys, tool: str, *args: str) -> tuple[int, str]:
    """``tools/<tool>.py args`` run in this process as from a shell; its exit code and stderr."""
    try:
        run_main(f'tools/{tool}.py', *args)
    except SystemExit as exit_:
        return exit_.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def assert_one_line_usage_error(code: int, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and 'Traceback' not in err, err
    assert all(fragment in lines[-1] for fragment in fragments), err
    assert not [line for line in lines[:-1] if not line.startswith('usage:') and not line.startswith(' ')], err


# --- constructor values: named at construction --------------------------------------------------

@pytest.mark.parametrize('kwargs, message', [
    (dict(num_layers=0), 'num_layers must be an integer >= 1, got 0'),
    (dict(embed_dims=0), 'embed_dims must be an integer >= 1, got 0'),
    (dict(img_size=(64, 64, 64)), 'img_size must be a positive int or an (H, W) pair'),
    (dict(img_size=(64,)), 'img_size must be'),
    (dict(img_size=0), 'img_size must be'),
    (dict(patch_size=0), 'patch_size must be an integer >= 1, got 0'),
    (dict(patch_size=-16), 'patch_size must be an integer >= 1, got -16'),
    (dict(window_size=-1, with_cls_token=False), 'window_size must be an integer >= 0, got -1'),
    (dict(drop_path_rate=1.0), 'drop_path_rate must be a number in [0, 1), got 1.0'),
    (dict(in_channels=0), 'in_channels must be an integer >= 1, got 0'),
    (dict(out_indices='3'), "out_indices must be a block index or a sequence of them, got '3'"),
    (dict(out_indices=(2, 2)), 'out_indices=[2, 2] must name distinct blocks in increasing order'),
    (dict(out_indices=(2, 0)), 'e.g. [0, 2]'),
    (dict(out_indices=(-1, 2)), 'out_indices=[-1, 2] must name distinct blocks'),  # -1 is block 2
])
def test_lape_vit_refuses_values_it_would_ignore_or_misread(kwargs, message):
    with pytest.raises(ConfigError) as err:
        LaPEViT(**tiny_vit_kwargs(**kwargs))
    assert message in str(err.value)


def test_out_indices_in_block_order_still_count_from_the_end():
    model = LaPEViT(**tiny_vit_kwargs(out_indices=(0, -1)))
    assert model.out_indices == (0, 2) and len(model(torch.randn(1, 3, 64, 64))) == 2


@pytest.mark.parametrize('kwargs, message', [
    (dict(n_points=0), 'n_points must be an integer >= 1, got 0'),
    (dict(conv_inplane=0), 'conv_inplane must be an integer >= 1, got 0'),
    (dict(deform_num_heads=0), 'deform_num_heads must be an integer >= 1, got 0'),
])
def test_adapter_refuses_values_it_would_ignore_or_misread(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tiny_adapter(**kwargs)


def test_adapter_names_an_empty_batch():
    with pytest.raises(ValueError, match=r'empty batch \[0, 3, 64, 64\]'):
        tiny_adapter()(torch.randn(0, 3, 64, 64))


# --- schedules: a run that trains nothing is refused ------------------------------------------------

def test_a_schedule_that_trains_nothing_is_refused():
    cfg = load_config(str(ROOT / TINY))
    for key, value in (('max_iters', -1), ('max_iters', 0), ('max_iters', 2.5), ('max_epochs', 0)):
        cfg.train_cfg = {key: value}
        with pytest.raises(ConfigError, match=rf'train_cfg.{key} must be a positive integer, got {value}'):
            fit_schedule(cfg)


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


# --- CPU runs: each runtime switch is one warning ------------------------------------------------------

def test_cpu_switches_are_each_logged_once_as_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    logged = []
    monkeypatch.setattr('tools.launch.print_log',
                        lambda msg, logger=None, level=logging.INFO: logged.append((level, msg)))
    cfg = load_config(str(ROOT / ADAPTER_TINY), launcher='none')
    enable_amp(cfg)
    warnings = [msg for level, msg in logged if level == logging.WARNING]
    for switch in ('gloo instead of nccl', 'SyncBN layer configs with BN', 'bf16 autocast'):
        assert len([msg for msg in warnings if switch in msg]) == 1, warnings
    assert cfg.env_cfg.dist_cfg.backend == 'gloo' and cfg.optim_wrapper.dtype == 'bfloat16'


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
