"""What tools/train.py and tools/test.py do to a config before mmengine's Runner takes it.

The same config runs on 8 GPUs, on several nodes, and on a laptop CPU: without CUDA we switch
the process group to gloo, SyncBN to BN and AMP to bf16 autocast, with a warning for each. A
shortened schedule (``train_cfg.max_iters=20``) is checked against its LR/momentum schedulers here,
before the Runner has spent minutes building the model and the data.
"""
from __future__ import annotations

import argparse
import logging
import os
import os.path as osp
from collections.abc import Iterator, Mapping

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log
from mmengine.hub import get_config
from mmengine.registry import RUNNERS, init_default_scope
from mmengine.runner import Runner

from lape_mm.checkpoint import local_path, use_weights_only_loaders
from lape_mm.errors import ConfigError
from lape_mm.models.arguments import check_int, check_neck_inputs
from lape_mm.models.backbones.checkpoint_fit import pretrained_checkpoint
from .slurm_env import check_slurm_task, slurm_dist_env
from .work_dir import is_complete_checkpoint, newest_complete_checkpoint, recorded_last_checkpoint


class CfgOptionsAction(DictAction):
    """mmengine's ``--cfg-options`` parser, with an item lacking '=' a usage error instead of a traceback."""

    def __call__(self, parser, namespace, values, option_string=None):
        if bad := [item for item in values or () if '=' not in item]:
            raise argparse.ArgumentError(self, f'{bad[0]!r} is not KEY=VALUE, e.g. train_cfg.max_iters=100')
        super().__call__(parser, namespace, values, option_string)


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """The arguments tools/train.py and tools/test.py share, named as in mmseg and mmdet."""
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default ./work_dirs/CONFIG)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config keys, e.g. train_cfg.max_iters=100')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--check-all-files', action='store_true',
                        help='before starting, decode every image and label map (default: an evenly spread '
                             'sample of about 500; listings, empty files and COCO json are always checked whole)')


def parse_runner_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _warn(message: str) -> None:
    print_log(message, logger='current', level=logging.WARNING)


def config_dicts(node) -> Iterator[Mapping]:
    """Every dict of a config tree (``node`` itself first, then those inside it, depth first)."""
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from config_dicts(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from config_dicts(value)


def replace_sync_bn(node) -> int:
    """Turn every ``type='SyncBN'`` in a config tree into ``'BN'``; returns how many.

    Config-side, not mmengine's ``revert_sync_batchnorm``: the Runner builds the model itself."""
    sync_bns = [d for d in config_dicts(node) if d.get('type') == 'SyncBN']
    for d in sync_bns:
        d['type'] = 'BN'
    return len(sync_bns)


def adapt_to_cpu(cfg: Config, launcher: str) -> None:
    """Make a GPU config run without CUDA: gloo, BN instead of SyncBN, CPU-friendly DDP; under
    Slurm, the process group's rank and master come from the task's SLURM_* variables."""
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    if (backend := cfg.env_cfg.dist_cfg.get('backend')) not in (None, 'gloo'):
        _warn(f'no CUDA: the process group uses gloo instead of {backend}')
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    if replaced := replace_sync_bn(cfg.model):
        _warn(f'no CUDA: replaced {replaced} SyncBN layer configs with BN (SyncBN needs CUDA)')
    if launcher != 'none':
        if replaced:  # BN statistics stay rank-local: average them, so every rank keeps the checkpoint's
            cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type='SyncBuffersEveryIterHook')]
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
        if not dist.is_initialized():
            # mmengine's init_dist calls torch.cuda.set_device, which fails without a GPU.
            if launcher == 'slurm':
                os.environ.update(slurm_dist_env(os.environ, cfg.env_cfg.dist_cfg.get('port')))
            dist.init_process_group(backend='gloo')


def enable_amp(cfg: Config, dtype: str | None = None) -> None:
    """Mixed precision: fp16 with dynamic loss scaling (as mmseg/mmdet do; the default on CUDA) or
    bf16 autocast without scaling (the default elsewhere, and ``dtype='bfloat16'`` on CUDA)."""
    wrapper = cfg.optim_wrapper
    dtype = dtype or ('float16' if torch.cuda.is_available() else 'bfloat16')
    if wrapper.get('type') in ('AmpOptimWrapper', 'AutocastOptimWrapper'):
        print_log('AMP is already enabled in the config.', logger='current')
    elif dtype == 'float16':
        wrapper.type = 'AmpOptimWrapper'
        wrapper.loss_scale = 'dynamic'
    else:
        if not torch.cuda.is_available():
            _warn('no CUDA: --amp means bf16 autocast on the CPU (without loss scaling), not fp16')
        wrapper.type = 'AutocastOptimWrapper'
        wrapper.dtype = 'bfloat16'


def set_work_dir(cfg: Config, config_path: str, work_dir: str | None) -> None:
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def load_config(path: str, cfg_options: dict | None = None, launcher: str | None = None,
                work_dir: str | None = None) -> Config:
    """The config loader of every tool: a file, or an installed config (``'mmseg::_base_/...'``),
    with ``--cfg-options`` merged and its ``default_scope`` entered.

    For a Runner (``launcher`` given: train, test, the demo) it also sets the launcher and work
    dir and, without CUDA, adapts the config to the CPU (:func:`adapt_to_cpu`); the process's
    checkpoint reads become weights-only and read ``.safetensors`` (:func:`use_weights_only_loaders`).
    """
    if '::' in path:
        cfg = get_config(path)
    elif osp.isfile(path):
        cfg = Config.fromfile(path)
    else:
        raise FileNotFoundError(f'config file {path} does not exist')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope') or (path.split('::')[0] if '::' in path else 'mmseg'))
    check_neck_inputs(cfg.get('model') or {})
    if launcher is not None:
        if launcher == 'slurm':
            check_slurm_task(os.environ)
        use_weights_only_loaders()
        cfg.launcher = launcher
        set_work_dir(cfg, path, work_dir)
        if not torch.cuda.is_available():
            adapt_to_cpu(cfg, launcher)
    return cfg


def set_pretrained(cfg: Config, checkpoint: str) -> None:
    """``--pretrained``: the backbone starts from ``checkpoint``, whatever the config's ``init_cfg`` was
    (``--cfg-options model.backbone.init_cfg.checkpoint=...`` cannot set a key of an ``init_cfg=None``)."""
    if not isinstance(cfg.model.get('backbone'), dict):
        raise ConfigError('--pretrained sets model.backbone.init_cfg, but this config has no model.backbone')
    cfg.model.backbone.init_cfg = ConfigDict(type='Pretrained', checkpoint=checkpoint)


def schedule_length(cfg: Config) -> tuple[str, int]:
    """``('max_iters', N)`` or ``('max_epochs', N)`` of ``train_cfg``: the key its loop counts in (the other
    one is refused: mmengine's loops fail on it with a TypeError), N positive (0 or -1 would train
    nothing and exit as if it had succeeded); and ``val_interval``, if given, positive."""
    train_cfg = cfg.get('train_cfg') or {}
    loop = str(train_cfg.get('type', '')).split('.')[-1]
    by_epoch = {'EpochBasedTrainLoop': True, 'IterBasedTrainLoop': False}.get(loop, train_cfg.get('by_epoch'))
    if by_epoch is None:  # another loop type: the key it was given
        key = 'max_iters' if 'max_iters' in train_cfg else 'max_epochs'
    else:
        key, other = ('max_epochs', 'max_iters') if by_epoch else ('max_iters', 'max_epochs')
        if other in train_cfg:
            counted = f'train_cfg.type={loop}' if loop else f'train_cfg.by_epoch={by_epoch}'
            raise ConfigError(f'train_cfg.{other} does not apply here: this config counts its run in '
                              f'{key[4:]} ({counted}); set train_cfg.{key}=N instead')
    length = train_cfg.get(key)
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ConfigError(f'train_cfg.{key} must be a positive integer, got {length!r}')
    if 'val_interval' in train_cfg:
        check_int('train_cfg.val_interval', train_cfg['val_interval'])
    return key, length


def fit_schedule(cfg: Config) -> None:
    """Check ``param_scheduler`` against the run's length and leave out the phases it never reaches.

    mmengine cuts every phase at the end of the run, except one that begins at or after it: its
    ``end`` defaults to the run's length and mmengine refuses ``end <= begin`` ("end should be larger
    than begin"), once model and data are built. So a 1-epoch run of a recipe with a 1-epoch warm-up
    failed. Such a phase is left out with a warning (the run is the warm-up's first part, as
    mmengine cuts any other phase); a phase the run reaches must end after it begins."""
    key, length = schedule_length(cfg)
    unit = key[len('max_'):-1]  # 'iter' or 'epoch'
    schedulers = cfg.get('param_scheduler')
    if not schedulers:
        return
    kept = []
    for i, scheduler in enumerate(schedulers if isinstance(schedulers, (list, tuple)) else [schedulers]):
        # Only phases counted in the run's own unit can be compared with its length.
        same_unit = bool(scheduler.get('by_epoch', True)) == (unit == 'epoch')
        begin, end = scheduler.get('begin', 0), scheduler.get('end', length if same_unit else float('inf'))
        name = f"param_scheduler[{i}] ({scheduler.get('type')}, {unit if same_unit else 'step'}s {begin}..{end})"
        if same_unit and begin >= length:
            shorten = f'--cfg-options param_scheduler.{i - 1}.end=N param_scheduler.{i}.begin=N with N < {length}, '
            _warn(f'train_cfg.{key}={length} ends the run before {name} begins, so it is left out; to run it, '
                  f'end the warm-up earlier ({shorten if i else ""}or train longer)')
            continue
        if end <= begin:
            raise ConfigError(f'{name} ends before it begins: give it an end after {begin}')
        kept.append(scheduler)
    cfg.param_scheduler = kept


def build_runner(cfg: Config) -> Runner:
    """The config's Runner (``runner_type`` names another, e.g. FSDP's ``FlexibleRunner``)."""
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def resume_checkpoint(work_dir: str, since: float | None = None) -> str | None:
    """``last_checkpoint`` if it names a complete file, else the newest complete checkpoint (with a
    warning); with ``since`` (a ``time.time()``), only a checkpoint written since then."""
    recorded = recorded_last_checkpoint(work_dir)
    complete = bool(recorded) and is_complete_checkpoint(recorded)
    if complete and (since is None or osp.getmtime(recorded) >= since):
        return recorded
    newest = newest_complete_checkpoint(work_dir, since)
    if recorded is not None and not complete and since is None:
        _warn(f'{osp.join(work_dir, "last_checkpoint")} names {recorded or "no file"}, which is not a complete '
              f'checkpoint; ' + (f'resuming from the newest complete one, {newest}' if newest
                                  else 'no complete checkpoint is left'))
    return newest


def job_checkpoint(work_dir: str) -> str | None:
    """The newest complete checkpoint that this tools/dist_train.sh job wrote (the script exports
    its launch time), if any: there is one only when torchrun restarted the job's processes."""
    launched = os.environ.get('LAPE_MM_LAUNCH_TIME')
    return resume_checkpoint(work_dir, since=float(launched)) if launched else None


def configure_checkpoints(cfg: Config, resume: str | None) -> None:
    """Checkpointing of a training run, and ``--resume``: alone, from the work dir's last
    complete checkpoint; with a path, from it.

    Processes that torchrun restarted after a failure resume by themselves, from the newest
    complete checkpoint of their job (:func:`job_checkpoint`); before the job's first checkpoint
    they start as the first ones did. A new job never resumes unasked, as in mmseg and mmdet.
    """
    if latest := job_checkpoint(cfg.work_dir):
        _warn(f'restarted: resuming from {latest}, the newest checkpoint of this job')
        resume = latest
    if resume is None:
        return
    path = resume_checkpoint(cfg.work_dir) if resume == 'auto' else resume
    if path is None:
        _warn(f'--resume: no checkpoint in {cfg.work_dir} to resume from; training from the start')
        return
    if is_missing_local_file(path):
        raise FileNotFoundError(f'--resume: checkpoint {path} does not exist')
    cfg.resume = True
    cfg.load_from = path


def configure_test_outputs(cfg: Config, show_dir: str | None, out: str | None) -> None:
    """``--show-dir`` draws predictions; ``--out`` keeps raw results (mmseg: PNGs, mmdet: a pickle)."""
    scope = cfg.get('default_scope', 'mmseg')
    if show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise KeyError('--show-dir needs default_hooks.visualization in the config')
        hook.draw = True
        hook.interval = 1  # every image, not every 50th
        if scope == 'mmdet':
            hook.test_out_dir = show_dir
        else:
            cfg.visualizer.save_dir = show_dir
    if out and scope != 'mmdet':
        cfg.test_evaluator.output_dir = out
        cfg.test_evaluator.keep_results = True


def dump_det_results(runner: Runner, out: str) -> None:
    from mmdet.evaluation import DumpDetResults
    runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))


def is_missing_local_file(checkpoint: str) -> bool:
    """Whether ``checkpoint`` is a local path or ``file://`` URL that names no file (what mmengine
    downloads, ``https://``, ``s3://``..., is checked when it is fetched)."""
    is_local = '://' not in checkpoint or checkpoint.startswith('file://')
    return is_local and not osp.isfile(local_path(checkpoint))


def missing_pretrained(node) -> list[str]:
    """Local ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` files that do not exist."""
    paths = (pretrained_checkpoint(d.get('init_cfg')) for d in config_dicts(node))
    return [path for path in paths if path is not None and is_missing_local_file(path)]


def check_pretrained(cfg: Config) -> None:
    """Fail before the Runner spends minutes building model and data if a pretrained checkpoint is missing."""
    if missing := missing_pretrained(cfg.model):
        raise FileNotFoundError(
            f'pretrained checkpoint {missing[0]} does not exist: make one with configs/pretrain/ '
            f'(README "Configs"), point init_cfg.checkpoint at a DeiT/timm/mmseg ViT file, or train '
            f'from scratch with --cfg-options model.backbone.init_cfg=None')


def check_all_files(cfg: Config) -> None:
    """``--check-all-files``: the config's ``DataCheckHook`` decodes every image and label map."""
    hooks = [hook for hook in cfg.get('custom_hooks', []) if hook.get('type') == 'DataCheckHook']
    if not hooks:
        raise ConfigError('--check-all-files sets DataCheckHook(sample=None), but the config has no DataCheckHook in '
                          'custom_hooks: inherit configs/_base_/lape_runtime.py')
    for hook in hooks:
        hook.sample = None
