"""Evaluate a checkpoint on a config's test set: same CLI as mmseg's and mmdet's tools/test.py."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from mmengine.config import DictAction  # noqa: E402

import lape_mm  # noqa: E402,F401  (registers LaPE models, safe checkpoint globals)
from lape_mm.engine.launch import build_runner, check_data, configure_test_outputs, dump_det_results, load_config  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation log goes')
    parser.add_argument('--out', help='mmseg: folder for predicted label PNGs; mmdet: .pkl of raw results')
    parser.add_argument('--show-dir', help='folder for images with predictions drawn on them')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. test_dataloader.batch_size=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
    cfg = load_config(args.config, args.launcher, args.work_dir, args.cfg_options)
    cfg.load_from = args.checkpoint
    configure_test_outputs(cfg, args.show_dir, args.out)
    check_data(cfg, ('test_dataloader',))
    runner = build_runner(cfg)
    if args.out and cfg.get('default_scope') == 'mmdet':
        dump_det_results(runner, args.out)
    runner.test()


if __name__ == '__main__':
    main()
