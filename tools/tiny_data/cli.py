"""The command line the tools/make_tiny_*.py scripts share."""
from __future__ import annotations

import argparse

from tools.cli import int_at_least


def parse_args(description: str, out: str, train: int, val: int, unit: str = 'images') -> argparse.Namespace:
    """``OUT [--train N --val N --seed S --force]`` with these defaults; ``unit`` names what N counts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('out', nargs='?', default=out,
                        help=f'output folder (default {out}): new, empty, or a tiny set of the same kind, whose own '
                             f'files are replaced (other files there stay)')
    parser.add_argument('--train', type=int_at_least(0), default=train, help=f'training {unit}')
    parser.add_argument('--val', type=int_at_least(0), default=val, help=f'validation {unit}')
    parser.add_argument('--seed', type=int_at_least(0), default=0)
    parser.add_argument('--force', action='store_true',
                        help='write into a non-empty OUT that is not a tiny set of this kind: replaces what the set '
                             'writes there (e.g. train2017/), keeps the rest')
    return parser.parse_args()
