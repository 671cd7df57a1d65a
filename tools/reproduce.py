"""Reproduce docs/reproduction.md's CPU studies, tables and figures, from scratch.

    python tools/reproduce.py [--study joins|deep] [--out DIR] [--threads N] [--quick] [--seeds S ...]

``--study joins`` (the default): LaPE's PE joins and PE types against add, 4 blocks, 2 threads, ~30 min.
``--study deep``: 12 blocks on an 8x8 grid, LaPE against RoPE, fine-tunes from a plain checkpoint and test
resolutions, 1 thread, ~50 min; resumable: each run's result is cached in OUT/cache, and a stopped
study goes on where it stopped.
``--seeds`` adds seeds to the deep study (where an interval sits near zero), training only the new runs.
``--quick`` writes to work_dirs/ (never into docs/figures/: its throwaway numbers would replace the
committed results).
"""
import argparse
import dataclasses
import os
import sys
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs, spinning threads
# made each training step 2-3x slower. Must be set before torch loads OpenMP.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import torch  # noqa: E402

from tools import study  # noqa: E402
from tools.cli import int_at_least, run_main  # noqa: E402

FIGURES = Path(__file__).resolve().parents[1] / 'docs/figures'
# study -> (committed results, --quick's folder, default threads: what the committed numbers were made with)
STUDIES = {'joins': (FIGURES / 'reproduction', 'work_dirs/reproduce_quick', 2),
           'deep': (FIGURES / 'reproduction_deep', 'work_dirs/reproduce_deep_quick', 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--study', choices=tuple(STUDIES), default='joins', help='which study (default: joins)')
    parser.add_argument('--out', help='folder for results.md/json and PNGs (default: docs/figures/reproduction '
                                      'or docs/figures/reproduction_deep, with --quick a folder in work_dirs/)')
    parser.add_argument('--threads', type=int_at_least(1),
                        help='torch threads (default: what the numbers were made with, 2 for joins, 1 for deep)')
    parser.add_argument('--quick', action='store_true', help='seconds on a sliver of data (a smoke test)')
    parser.add_argument('--seeds', type=int, nargs='+', help='deep study: its seeds (default 0 1 2); runs of '
                                                             'seeds already in the cache are not trained again')
    args = parser.parse_args()
    results, quick_out, threads = STUDIES[args.study]
    if args.quick and args.out and Path(args.out).resolve() == results:
        parser.error(f'--quick would replace the committed results in {results} with smoke-test numbers; '
                     f'give another --out')
    args.out = args.out or (quick_out if args.quick else str(results))
    torch.set_num_threads(args.threads or threads)
    if args.seeds and args.study != 'deep':
        parser.error('--seeds is an option of --study deep')
    if args.study == 'deep':
        config = study.DEEP_QUICK if args.quick else study.DEEP_FULL
        print(study.reproduce_deep(args.out, dataclasses.replace(config, seeds=tuple(args.seeds or config.seeds))))
    else:
        print(study.reproduce(args.out, study.QUICK if args.quick else study.FULL))


if __name__ == '__main__':
    run_main(main)
