"""tools/launch.py: what it does to a config before the Runner is built (schedules, AMP, SyncBN on the CPU,
pretrained files, resume from the work dir)."""
import logging
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from lape_mm.errors import ConfigError
from tools.launch import check_pretrained, enable_amp, fit_schedule, load_config, replace_sync_bn

from conftest import ROOT
from helpers.tiny_runs import TINY_SEG as TINY, tiny_seg_config


def test_replace_sync_bn_walks_the_whole_config():
    cfg = dict(decode_head=dict(norm_cfg=dict(type='SyncBN')), heads=[dict(norm_cfg=dict(type='SyncBN'))],
               backbone=dict(norm_cfg=dict(type='LN')))
    assert replace_sync_bn(cfg) == 2
    assert cfg['decode_head']['norm_cfg']['type'] == 'BN' and cfg['backbone']['norm_cfg']['type'] == 'LN'


def test_missing_pretrained_checkpoints_are_found(tmp_path):
    from tools.launch import missing_pretrained
    present = tmp_path / 'deit.pth'
    present.write_bytes(b'')
    model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=str(present))),
                 neck=[dict(init_cfg=dict(type='Pretrained', checkpoint='pretrain/missing.pth'))],
                 head=dict(init_cfg=dict(type='Pretrained', checkpoint='https://host/remote.pth')))
    assert missing_pretrained(model) == ['pretrain/missing.pth']


@pytest.mark.parametrize('cuda, dtype, wrapper', [
    (False, None, 'AutocastOptimWrapper'), (False, 'bfloat16', 'AutocastOptimWrapper'),
    (False, 'float16', 'AmpOptimWrapper'), (True, None, 'AmpOptimWrapper'), (True, 'bfloat16', 'AutocastOptimWrapper'),
    (True, 'float16', 'AmpOptimWrapper')])
def test_amp_dtype_selects_the_optim_wrapper(monkeypatch, cuda, dtype, wrapper):
    """tools/train.py --amp [--amp-dtype]: bf16 autocast by default without CUDA, fp16 with loss scaling
    by default with CUDA (mocked either way, so the test means the same on every machine)."""
    from mmengine.config import Config
    from tools.launch import enable_amp
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))))
    enable_amp(cfg, dtype)
    assert cfg.optim_wrapper.type == wrapper
    assert cfg.optim_wrapper.get('loss_scale') == ('dynamic' if wrapper == 'AmpOptimWrapper' else None)
    assert cfg.optim_wrapper.get('dtype') == ('bfloat16' if wrapper == 'AutocastOptimWrapper' else None)


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


def test_missing_pretrained_error_cites_an_existing_readme_section(tmp_path):
    cfg = tiny_seg_config()
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'missing.pth'))
    with pytest.raises(FileNotFoundError) as err:
        check_pretrained(cfg)
    section = re.search(r'README "([^"]+)"', str(err.value)).group(1)
    assert f'\n## {section}\n' in (ROOT / 'README.md').read_text()


ADAPTER_TINY = 'configs/upernet_lape_vit_adapter_t_tiny-ade_128x128.py'  # its adapter norms are SyncBN


def test_a_schedule_that_trains_nothing_is_refused():
    cfg = load_config(str(ROOT / TINY))
    for key, value in (('max_iters', -1), ('max_iters', 0), ('max_iters', 2.5), ('max_epochs', 0)):
        cfg.train_cfg = {key: value}
        with pytest.raises(ConfigError, match=rf'train_cfg.{key} must be a positive integer, got {value}'):
            fit_schedule(cfg)


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
