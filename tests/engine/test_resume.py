"""A run killed after its checkpoint of iteration 2 (epoch 1) and resumed ends with exactly the weights of an
uninterrupted run: through lape_mm's tools/train.py with the data loaded in the main process or in workers,
and through mmseg's and mmdet's own tools/train.py, which get the same guarantees from the config alone."""
import sys
from pathlib import Path

import mmdet
import mmseg
import pytest
import torch

from lape_mm.checkpoint import safe_load

from conftest import run_process, run_tool
from tiny_runs import MASK_RCNN, UPERNET, cfg_options, hook_config, hook_env

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
