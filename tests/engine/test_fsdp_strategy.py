"""FSDP (FSDP2Strategy through mmengine's FlexibleRunner): two CPU processes over gloo train the
tiny FSDP config, resume, and write full state dicts that one plain process evaluates to the
sharded model's outputs; the per-rank memory count of tools/benchmark.py --sharded-memory."""
import re
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import ROOT, build_model, free_port, run_tool
from helpers.tiny_runs import cfg_options
from tools.tiny_data import make_tiny_ade

FSDP = 'configs/upernet_lape_vit_t_tiny-ade_128x128_fsdp.py'
PLAIN = 'configs/upernet_lape_vit_t_tiny-ade_128x128.py'
# 4 blocks; the heads keep their BN (SyncBN turned into BN on the CPU: each rank's statistics, averaged
# after every iteration, so the sharded evaluation sees the saved buffers). Sliding-window inference, as
# the ViT-L config: the validation images differ in size, so the two ranks run different numbers of
# crops (9 + 9 and 9 + 12 forwards).
MODEL = {'model.backbone.num_layers': 4, 'model.backbone.out_indices': [0, 1, 2, 3],
         'model.test_cfg.mode': 'slide', 'model.test_cfg.crop_size': [64, 64], 'model.test_cfg.stride': [48, 48]}


def _options(data_root: Path, **extra) -> list[str]:
    options = {'train_dataloader.dataset.data_root': data_root, 'val_dataloader.dataset.data_root': data_root,
               'test_dataloader.dataset.data_root': data_root, **MODEL,
               'train_cfg.max_iters': 4, 'train_cfg.val_interval': 100, 'default_hooks.checkpoint.interval': 2,
               'default_hooks.logger.interval': 1, 'train_dataloader.batch_size': 2, 'randomness.seed': 0,
               'randomness.deterministic': True, **extra}
    return cfg_options(options)


def _dist_train(work: Path, options: list[str], *args: str) -> str:
    """tools/dist_train.sh FSDP 2 on the CPU."""
    return run_tool('tools/dist_train.sh', FSDP, '2', '--work-dir', str(work), *args, *options, timeout=300,
                    env={'PYTHON': sys.executable, 'PORT': str(free_port()), 'OMP_NUM_THREADS': '1',
                         'CUDA_VISIBLE_DEVICES': ''})


def _plain_model_shapes() -> dict:
    """The state dict shapes of the plain (non-FSDP) twin, built by mmseg alone."""
    cfg = Config.fromfile(ROOT / PLAIN)
    cfg.merge_from_dict(MODEL)
    return {k: v.shape for k, v in build_model(cfg.model, 'mmseg').state_dict().items()}


@pytest.mark.slow
def test_fsdp_trains_resumes_and_one_process_evaluates_its_full_checkpoint(tmp_path):
    """2-process FSDP run to iteration 4; a second one resumes from iteration 2 and evaluates the
    sharded model; tools/test.py in one process, with the plain config, evaluates the checkpoint."""
    root = make_tiny_ade(tmp_path / 'data', num_train=8, num_val=4, seed=1)
    whole, resumed, sharded_out, plain_out = (tmp_path / n for n in ('whole', 'resumed', 'sharded_png', 'plain_png'))
    out = _dist_train(whole, _options(root))
    assert 'FSDP2: 8 units (LaPEBlock.pe_norm, LaPEBlock) + the root, sharded over 2 ranks' in out
    assert "'backend': 'gloo'" in out
    assert not list(whole.glob('.tmp-*')), 'a checkpoint write was not atomic'
    # A full state dict of plain tensors, read weights-only, shaped as the plain (non-FSDP) model.
    expected = torch.load(whole / 'iter_4.pth', weights_only=True)
    assert {k: v.shape for k, v in expected['state_dict'].items()} == _plain_model_shapes()
    assert all(type(v) is torch.Tensor for v in expected['state_dict'].values())

    out = _dist_train(resumed, _options(root, **{'train_cfg.val_interval': 4, 'val_evaluator.output_dir': sharded_out,
                                                 'val_evaluator.keep_results': True}),
                      '--resume', str(whole / 'iter_2.pth'))
    assert 'resumed epoch: 0, iter: 2' in out
    sharded_miou = re.findall(r'mIoU: ([\d.]+)', out)[-1]

    checkpoint = torch.load(resumed / 'iter_4.pth', weights_only=True)
    weights = checkpoint['state_dict']
    for key, value in expected['state_dict'].items():  # resuming at 2 ends where the unbroken run ends
        torch.testing.assert_close(weights[key], value, atol=0, rtol=0, msg=key)
    assert checkpoint['optimizer']['state'].keys() == expected['optimizer']['state'].keys()
    for name, state in expected['optimizer']['state'].items():
        torch.testing.assert_close(checkpoint['optimizer']['state'][name], state, atol=0, rtol=0, msg=name)

    out = run_tool('tools/test.py', PLAIN, str(resumed / 'iter_4.pth'), '--work-dir', str(tmp_path / 'test'),
                   '--out', str(plain_out), *_options(root), timeout=300, env={'OMP_NUM_THREADS': '1'})
    assert re.findall(r'mIoU: ([\d.]+)', out)[-1] == sharded_miou
    pngs = sorted(p.name for p in plain_out.glob('*.png'))
    assert len(pngs) == 4 and pngs == sorted(p.name for p in sharded_out.glob('*.png'))
    for name in pngs:
        assert (plain_out / name).read_bytes() == (sharded_out / name).read_bytes(), name


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_fsdp_on_a_gpu_takes_mmengines_nccl_path(tmp_path):
    """One GPU, one rank: mmengine initialises NCCL and the strategy shards over a CUDA mesh, in bf16
    autocast as the ViT-L config (never run on the CPU machine this was written on)."""
    root = make_tiny_ade(tmp_path / 'data', num_train=4, num_val=2, seed=1)
    out = run_tool('tools/dist_train.sh', FSDP, '1', '--amp', '--amp-dtype', 'bfloat16', '--work-dir', str(tmp_path),
                   *_options(root, **{'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2,
                                      'randomness.deterministic': False}), timeout=300,
                   env={'PYTHON': sys.executable, 'PORT': str(free_port())})
    assert "'backend': 'nccl'" in out and 'sharded over 1 ranks' in out and 'mIoU' in out
    weights = torch.load(tmp_path / 'iter_2.pth', weights_only=True)['state_dict']
    assert all(type(v) is torch.Tensor for v in weights.values())


@pytest.mark.slow
def test_sharded_memory_count_equals_a_real_step_and_fsdp_halves_it():
    """tools/benchmark.py --sharded-memory counts on meta tensors: a real gloo step of the tiny FSDP
    config holds the same bytes; DDP's equal the whole model's, each FSDP rank holds about half."""
    from mmseg.registry import MODELS
    from tools.analysis.sharded_memory import measure
    counted = measure(FSDP, 2, real_step=True)
    for mode in ('ddp', 'fsdp'):
        assert counted[mode] == counted[f'{mode} real step']
    init_default_scope('mmseg')
    cfg = Config.fromfile(ROOT / FSDP)
    params = list(MODELS.build(cfg.model).parameters())
    param_bytes = sum(p.numel() * 4 for p in params)
    adam_steps = 4 * len(params)  # AdamW: exp_avg and exp_avg_sq like the parameter, one fp32 step count
    for rank in counted['ddp']:
        assert (rank.params, rank.grads, rank.optimizer) == (param_bytes, param_bytes, 2 * param_bytes + adam_steps)
    fsdp = counted['fsdp']
    assert sum(r.params for r in fsdp) == param_bytes and sum(r.grads for r in fsdp) == param_bytes
    for rank in fsdp:
        assert rank.optimizer == 2 * rank.params + adam_steps
        assert abs(rank.params / param_bytes - 0.5) < 0.02


def test_strategy_refuses_a_model_without_the_named_units_and_fsdp1_options():
    from lape_mm.engine import FSDP2Strategy
    from lape_mm.engine.fsdp_strategy import shard_model
    with pytest.raises(ValueError, match=r"no module \('LaPEBlock',\); set strategy.shard_modules"):
        shard_model(torch.nn.Sequential(torch.nn.Linear(2, 2)), None, ('LaPEBlock',))
    with pytest.raises(ValueError, match="'state_dict_cfg' is an option of mmengine's FSDPStrategy"):
        FSDP2Strategy(state_dict_cfg='local')
