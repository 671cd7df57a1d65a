"""Short schedules: a warm-up longer than a shortened run no longer crashes it ("end should be larger
than begin"); `tools/demo.py --iters N` scales its warm-up; every tiny config schedules 2 iterations /
1 epoch of its own recipe."""
import copy
import logging
import re

import pytest
import torch
from mmengine.config import DictAction
from mmengine.optim import OptimWrapper
from mmengine.registry import PARAM_SCHEDULERS

from tools.demo import schedule_options
from tools.launch import build_runner, fit_schedule, load_config
from tools.tiny_data import make_tiny_imagenet

from conftest import ROOT
from helpers.tiny_runs import TINY_SEG as TINY
from helpers.tiny_runs import ADAPTER, ADAPTER_LAYERS, UPERNET_LAYERS, cls_options, det_options, seg_options

TINY_IMAGENET = 'configs/pretrain/lape_deit_tiny_tiny-imagenet.py'


def learning_rates(cfg, steps: int, epoch_length: int = 1) -> list[float]:
    """The lr of each of ``steps`` iterations under ``cfg.param_scheduler``, built as mmengine's Runner
    builds it (a missing ``end`` is the run's length) on a one-parameter SGD at lr 1."""
    length = cfg.train_cfg.get('max_iters') or cfg.train_cfg.max_epochs
    optimizer = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.))
    schedulers = [PARAM_SCHEDULERS.build({'end': length, **s}, default_args=dict(
        optimizer=optimizer, epoch_length=epoch_length)) for s in cfg.param_scheduler]
    lrs = []
    for step in range(steps):
        lrs.append(optimizer.param_groups[0]['lr'])
        for scheduler in schedulers:
            if not scheduler.by_epoch or (step + 1) % epoch_length == 0:
                scheduler.step()
    return lrs


@pytest.fixture(scope='module')
def tiny_cfg():
    return load_config(str(ROOT / TINY))


def with_options(cfg, options: list[str]):
    """A copy of ``cfg`` with ``--cfg-options`` items, parsed as tools/train.py parses them."""
    cfg = copy.deepcopy(cfg)
    cfg.merge_from_dict({key: DictAction._parse_iterable(value) for key, value in (o.split('=') for o in options)})
    return cfg


def test_demo_warm_up_fits_a_short_run(tiny_cfg):
    cfg = with_options(tiny_cfg, schedule_options(20))
    fit_schedule(cfg)
    lrs = learning_rates(cfg, 20)
    # the warm-up reaches the peak within the first tenth, and the decay ends at eta_min=0 with the run
    assert len(cfg.param_scheduler) == 2 and lrs[0] == pytest.approx(1e-3) and lrs[2] == max(lrs) == 1.
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] == 0.
    assert schedule_options(300)[2:4] == ['param_scheduler.0.end=30', 'param_scheduler.1.begin=30']  # the config's


def test_a_phase_after_the_end_of_the_run_is_left_out_with_a_warning(monkeypatch):
    logged = []
    monkeypatch.setattr('tools.launch.print_log', lambda msg, logger=None, level=logging.INFO: logged.append(msg))
    cfg = load_config(str(ROOT / TINY_IMAGENET), {'train_cfg.max_epochs': 1})
    fit_schedule(cfg)
    assert [s.type for s in cfg.param_scheduler] == ['LinearLR']
    assert logged == ['train_cfg.max_epochs=1 ends the run before param_scheduler[1] (CosineAnnealingLR, epochs '
                      '1..1) begins, so it is left out; to run it, end the warm-up earlier (--cfg-options '
                      'param_scheduler.0.end=N param_scheduler.1.begin=N with N < 1, or train longer)']
    lrs = learning_rates(cfg, 5, epoch_length=5)
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-3)  # the warm-up, cut at the end of the run


def test_a_phase_ending_before_it_begins_is_named(tiny_cfg):
    cfg = with_options(tiny_cfg, ['param_scheduler.1.end=20'])
    with pytest.raises(ValueError, match=r'param_scheduler\[1\] \(PolyLR, iters 30\.\.20\) ends before it begins'):
        fit_schedule(cfg)


# config name -> (the data it trains on, its options); every config on a tiny data set, _add twins too.
FAMILIES = {
    'upernet_lape_vit_t_tiny-ade': ('ade', lambda root: seg_options(root, **UPERNET_LAYERS)),
    'upernet_lape_vit_adapter_t_tiny-ade': ('ade', lambda root: seg_options(root, **ADAPTER_LAYERS)),
    'segmenter_lape_vit_t_mask_tiny-ade': ('ade', seg_options),
    'mask_rcnn_lape_vit_t_simplefpn_tiny-coco': ('coco', det_options),
    'mask_rcnn_lape_vit_adapter_t_fpn_tiny-coco': ('coco', ADAPTER.options),
    'lape_deit_tiny_tiny-imagenet': ('imagenet', lambda root: cls_options(
        root, **{'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1})),
}
# Twins that differ from their config only in pe_join (_add) or in how processes share the model
# (_fsdp, trained by tests/engine/test_fsdp_strategy.py in two processes): their fitted schedule is their config's.
TWIN_SUFFIX = re.compile(r'_(add|fsdp)$')
TINY_CONFIGS = sorted(p.relative_to(ROOT) for p in ROOT.glob('configs/**/*_tiny-*.py'))


def test_every_tiny_config_has_a_smoke_run():
    assert len(TINY_CONFIGS) == 15 and all(any(f in str(c) for f in FAMILIES) for c in TINY_CONFIGS)


def _short_run(config, data_root: str, launcher: str | None = None):
    """``config`` shortened to 2 iterations / 1 epoch by its family's options, schedule fitted as tools/train.py does."""
    _, options = next(family for name, family in FAMILIES.items() if name in str(config))
    cfg = load_config(str(ROOT / config), options(data_root), launcher)
    fit_schedule(cfg)
    return cfg


@pytest.mark.parametrize('config', TINY_CONFIGS, ids=lambda c: c.stem)
def test_every_tiny_config_schedules_a_2_iteration_or_1_epoch_run(config):
    """Each config's own schedulers, fitted to the short run, build as mmengine's Runner builds them (which
    refused a warm-up as long as the run: "end should be larger than begin") and give a finite lr. A twin
    (``TWIN_SUFFIX``) gets its config's schedule."""
    cfg = _short_run(config, 'data')
    assert all(0 <= lr < float('inf') for lr in learning_rates(cfg, 2))
    if TWIN_SUFFIX.search(config.stem):
        twin = _short_run(TWIN_SUFFIX.sub('', str(config)), 'data')
        assert (cfg.param_scheduler, cfg.train_cfg) == (twin.param_scheduler, twin.train_cfg)


@pytest.mark.slow
def test_pretraining_trains_one_epoch_of_its_own_schedule(tmp_path):
    """The case that crashed: DeiT's recipe (a 1-epoch warm-up) for 1 epoch, in-process as tools/train.py
    runs it (schedule fitted, data checked). The other tiny configs train through tools/train.py, which
    fits their schedules too, in tests/tools/test_multiprocess.py and the end-to-end tests."""
    root = make_tiny_imagenet(tmp_path / 'imagenet', train_per_class=1, val_per_class=1)
    config = next(c for c in TINY_CONFIGS if c.stem == 'lape_deit_tiny_tiny-imagenet')
    cfg = _short_run(config, str(root), launcher='none')
    cfg.work_dir = str(tmp_path / 'work')
    runner = build_runner(cfg)
    runner.train()
    assert runner.iter == len(runner.train_dataloader) and runner.epoch == 1
