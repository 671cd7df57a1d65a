"""Train a model from an mmseg/mmdet/lape_mm config: same CLI as mmseg's and mmdet's tools/train.py."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from mmengine.config import DictAction  # noqa: E402

import lape_mm  # noqa: E402,F401  (registers LaPE models, safe checkpoint globals)
from lape_mm.engine.launch import build_runner, check_data, configure_resume, enable_amp, load_config  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a segmentor, detector or classifier')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default ./work_dirs/CONFIG)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 + loss scaling on CUDA, bf16 autocast on CPU')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from the latest checkpoint in the work dir, or from a given path')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. train_cfg.max_iters=100')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.launcher, args.work_dir, args.cfg_options)
    if args.amp:
        enable_amp(cfg)
    configure_resume(cfg, args.resume)
    check_data(cfg, ('train_dataloader', 'val_dataloader'))
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
