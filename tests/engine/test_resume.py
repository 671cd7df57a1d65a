"""A run killed after its checkpoint of iteration 2 (epoch 1) and resumed ends with exactly the weights of an
uninterrupted run: through lape_mm's tools/train.py with the data loaded in the main process or in workers,
and through mmseg's and mmdet's own tools/train.py, which get the same guarantees from the config alone.
A run killed while it writes a checkpoint loses none of the kept ones and resumes to the end."""
import os
import signal
import stat
import sys
from pathlib import Path

import mmdet
import mmseg
import pytest
import torch

from lape_mm.checkpoint import safe_load

from conftest import run_process, run_tool
from helpers.tiny_runs import (MASK_RCNN, TINY_SEG as TINY, UPERNET, cfg_options, hook_config, hook_env,
                               small_run_options)


UPSTREAM_TRAIN = {'mmseg': Path(mmseg.__file__).parent / '.mim/tools/train.py',
                  'mmdet': Path(mmdet.__file__).parent / '.mim/tools/train.py'}


def _workers(num_workers: int) -> dict:
    return {'train_dataloader.num_workers': num_workers, 'train_dataloader.persistent_workers': num_workers > 0}


SEG = (UPERNET, lambda root, workers: {**UPERNET.options(root), 'train_cfg.max_iters': 4, 'train_cfg.val_interval': 2,
                                       'default_hooks.checkpoint.interval': 2, **_workers(workers)},
       "dict(type='KillAtIterHook', iteration=3)", 'iter_2.pth', 'iter_4.pth')
DET = (MASK_RCNN, lambda root, workers: {**MASK_RCNN.options(root), 'train_cfg.max_epochs': 2, **_workers(workers)},
       "dict(type='KillAtIterHook', iteration=6)", 'epoch_1.pth', 'epoch_2.pth')  # 4 iterations an epoch


@pytest.mark.slow
@pytest.mark.parametrize('tool,run,workers', [('lape_mm', SEG, 0), ('lape_mm', SEG, 2), ('mmseg', SEG, 0),
                                              ('mmdet', DET, 0)])
def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(tool, run, workers, tmp_path):
    """Validation runs at the checkpoint before the kill (iter 2 / epoch 1), so it is between the checkpoint
    and the next batch in the uninterrupted run only: that must not change what training draws."""
    tiny, options, kill_hook, saved, final = run
    data = tiny.make_data(tmp_path / 'data')
    script = 'tools/train.py' if tool == 'lape_mm' else str(UPSTREAM_TRAIN[tool])
    args = cfg_options({**options(data, workers), 'randomness.seed': 0})
    unbroken, broken = tmp_path / 'unbroken', tmp_path / 'broken'
    run_tool(script, tiny.config, '--work-dir', str(unbroken), *args)
    killing = hook_config(tmp_path, kill_hook, tiny.config)
    proc = run_process([sys.executable, script, killing, '--work-dir', str(broken), *args], env=hook_env())
    assert proc.returncode == -9, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (broken / saved).exists() and not (broken / final).exists()
    out = run_tool(script, tiny.config, '--work-dir', str(broken), '--resume', *args)
    assert 'resumed' in out.lower()
    expected, resumed = (safe_load(work / final)['state_dict'] for work in (unbroken, broken))
    assert expected.keys() == resumed.keys()
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], atol=0, rtol=0, msg=key)


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
