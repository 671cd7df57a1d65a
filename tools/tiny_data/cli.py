"""The command line the tools/make_tiny_*.py scripts share."""
from __future__ import annotations

import argparse


def non_negative(text: str) -> int:
    """An argparse type: an int >= 0 (a negative count or seed is a usage error, not a traceback)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
    return value


def parse_args(description: str, out: str, train: int, val: int, unit: str = 'images') -> argparse.Namespace:
    """``OUT [--train N --val N --seed S --force]`` with these defaults; ``unit`` names what N counts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('out', nargs='?', default=out,
                        help=f'output folder (default {out}): new, empty, or a tiny set of the same kind to replace')
    parser.add_argument('--train', type=non_negative, default=train, help=f'training {unit}')
    parser.add_argument('--val', type=non_negative, default=val, help=f'validation {unit}')
    parser.add_argument('--seed', type=non_negative, default=0)
    parser.add_argument('--force', action='store_true',
                        help='write into a non-empty OUT that is not a tiny set of this kind: deletes its contents')
    return parser.parse_args()
