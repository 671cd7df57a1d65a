"""Every model family trains in two processes (DDP over gloo), which needs every trainable
parameter to get a gradient in every step: DDP without ``find_unused_parameters`` fails at the
second iteration otherwise, and with it each step pays an extra graph traversal."""
import re
import sys

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import ROOT, build_model, free_port, logged_metrics, run_tool
from helpers.tiny_runs import FAMILIES, TinyRun, cfg_options


def _unused_parameters(run: TinyRun, root) -> list[str]:
    """Trainable parameters left without a gradient by one training step on a real batch."""
    cfg = Config.fromfile(ROOT / run.config)
    cfg.merge_from_dict({**run.options(root), 'train_dataloader.num_workers': 0,
                         'train_dataloader.persistent_workers': False})
    if cfg.get('data_preprocessor'):  # top-level in mmpretrain configs; mmengine's Runner does the same
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = build_model(cfg.model, cfg.default_scope)
    model.init_weights()
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    loss, _ = model.parse_losses(model(**model.data_preprocessor(batch, True), mode='loss'))
    loss.backward()
    return [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize('family', FAMILIES)
def test_every_trainable_parameter_gets_a_gradient(family, tmp_path):
    run = FAMILIES[family]
    assert _unused_parameters(run, run.make_data(tmp_path / 'data')) == []


@pytest.mark.slow
@pytest.mark.parametrize('family', FAMILIES)
def test_two_process_training_finishes(family, tmp_path):
    """tools/dist_train.sh CONFIG 2: two CPU processes over gloo, at least two iterations (DDP
    finds a parameter without gradient at the second), then a distributed evaluation."""
    run = FAMILIES[family]
    work, root = tmp_path / 'work', run.make_data(tmp_path / 'data')
    out = run_tool('tools/dist_train.sh', run.config, '2', '--work-dir', str(work), *cfg_options(run.options(root)),
                   env={'PYTHON': sys.executable, 'PORT': str(free_port()), 'OMP_NUM_THREADS': '1',
                        'CUDA_VISIBLE_DEVICES': ''})  # the CPU path, also where one GPU cannot host 2 ranks
    assert "dist_cfg: {'backend': 'gloo'}" in out and 'GPU number: 2' in out  # mmengine: the world size
    assert (work / run.checkpoint).exists() and re.search(r'(Iter|Epoch)\(val\)', out)
    assert list(work.glob('*/vis_data/scalars.json')), 'no training log was written'
    if family == 'upernet':  # BN in the heads: the ranks' statistics are averaged, as the checkpoint's are
        assert 'SyncBuffersEveryIterHook' in out
        test = run_tool('tools/test.py', run.config, str(work / run.checkpoint), '--work-dir', str(tmp_path / 'test'),
                        *cfg_options(run.options(root)), env={'OMP_NUM_THREADS': '1'})
        assert logged_metrics(test, 'aAcc|mIoU|mAcc') == logged_metrics(out, 'aAcc|mIoU|mAcc') != {}
