"""Train a model from an mmseg/mmdet/lape_mm config: same CLI as mmseg's and mmdet's tools/train.py."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import lape_mm  # noqa: E402,F401  (registers LaPE models, safe checkpoint globals)
from tools.launch import (add_runner_args, build_runner, check_all_files, check_pretrained,  # noqa: E402
                          configure_checkpoints, enable_amp, fit_schedule, load_config, parse_runner_args,
                          set_pretrained)
from tools.cli import run_main  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description='Train a segmentor, detector or classifier')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 + loss scaling on CUDA, bf16 autocast on CPU')
    parser.add_argument('--amp-dtype', choices=('float16', 'bfloat16'),
                        help='the --amp dtype (default: float16 on CUDA, bfloat16 elsewhere)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from the latest checkpoint in the work dir, or from a given path')
    parser.add_argument('--pretrained', metavar='PATH',
                        help="initialise the backbone from this checkpoint (.pth, .safetensors or URL, any format "
                             "init_cfg reads): sets model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH)")
    add_runner_args(parser)
    args = parse_runner_args(parser)
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    if args.pretrained:
        set_pretrained(cfg, args.pretrained)
    fit_schedule(cfg)
    if args.amp:
        enable_amp(cfg, args.amp_dtype)
    configure_checkpoints(cfg, args.resume)
    check_pretrained(cfg)
    if args.check_all_files:
        check_all_files(cfg)
    build_runner(cfg).train()


if __name__ == '__main__':
    run_main(main)
