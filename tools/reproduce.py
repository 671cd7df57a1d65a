"""Reproduce docs/reproduction.md: the CPU LaPE-vs-add study, tables and figures, from scratch.

    python tools/reproduce.py [--out docs/figures/reproduction] [--threads 2] [--quick]

``--quick`` writes to work_dirs/reproduce_quick (never into docs/figures/reproduction: its throwaway
numbers would replace the committed results).
"""
import argparse
import os
import sys
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs, spinning threads
# made each training step 2-3x slower. Must be set before torch loads OpenMP.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import torch  # noqa: E402

from tools.study import FULL, QUICK, reproduce  # noqa: E402
from tools.cli import int_at_least, run_main  # noqa: E402


RESULTS = Path(__file__).resolve().parents[1] / 'docs/figures/reproduction'  # the committed results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', help='folder for results.md/json and PNGs (default: docs/figures/reproduction, '
                                      'with --quick work_dirs/reproduce_quick)')
    parser.add_argument('--threads', type=int_at_least(1), default=2,
                        help='torch threads (the numbers were made with 2)')
    parser.add_argument('--quick', action='store_true', help='a few seconds on a sliver of data (a smoke test)')
    args = parser.parse_args()
    if args.quick and args.out and Path(args.out).resolve() == RESULTS:
        parser.error(f'--quick would replace the committed results in {RESULTS} with smoke-test numbers; '
                     f'give another --out')
    args.out = args.out or ('work_dirs/reproduce_quick' if args.quick else str(RESULTS))
    torch.set_num_threads(args.threads)
    print(reproduce(args.out, QUICK if args.quick else FULL))


if __name__ == '__main__':
    run_main(main)
