"""Parameters and FLOPs of a whole mmseg/mmdet model from its config.

tools/get_flops.py CONFIG [--shape H W] [--cfg-options k=v ...]

FLOPs follow mmengine's (and mmseg's / mmdet's get_flops) convention: one multiply-add counts as
one FLOP; fused attention is counted. The model runs in ``mode='tensor'`` (up to the heads' raw
outputs) on one random image; weights are not loaded.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import lape_mm  # noqa: E402,F401  (registers LaPEViT)
from tools.analysis.build import build_model  # noqa: E402
from tools.analysis.flops import model_complexity  # noqa: E402
from tools.launch import CfgOptionsAction, load_config  # noqa: E402
from tools.cli import run_main  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs='+', default=[512, 512], help='input size: H [W]')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, help='override config keys')
    args = parser.parse_args()
    if len(args.shape) > 2:
        sys.exit(f'--shape takes H or H W, got {len(args.shape)} numbers')
    hw = tuple(args.shape * 2)[:2]
    cfg = load_config(args.config, args.cfg_options)
    rows = model_complexity(build_model(cfg), cfg.get('default_scope', 'mmseg'), hw)
    print(f'{args.config}, input 1x3x{hw[0]}x{hw[1]}')
    print(f'{"module":<20} {"GFLOPs":>10} {"params (M)":>11}')
    for name, macs, params in rows:
        print(f'{name:<20} {macs / 1e9:>10.2f} {params / 1e6:>11.2f}')


if __name__ == '__main__':
    run_main(main)
