"""The command line the tools/make_tiny_*.py scripts share."""
from __future__ import annotations

import argparse


def parse_args(description: str, out: str, train: int, val: int, unit: str = 'images') -> argparse.Namespace:
    """``OUT [--train N --val N --seed S]`` with these defaults; ``unit`` names what N counts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('out', nargs='?', default=out, help=f'output folder (default {out})')
    parser.add_argument('--train', type=int, default=train, help=f'training {unit}')
    parser.add_argument('--val', type=int, default=val, help=f'validation {unit}')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()
