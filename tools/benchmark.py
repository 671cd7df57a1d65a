"""Speed, memory and FLOPs of LaPEViT next to mmseg's and timm's ViT, side by side in one process.

tools/benchmark.py --size 512 512 --batch 1 --threads 2 --repeats 5 [--amp] [--compile] [--with-cp]
                   [--kernel-bound] [--models lape add timm mmseg] [--segmentor] --out DIR

(--models also takes rope, rope-mixed and lape-rope: RoPE-Axial and RoPE-Mixed alone, and RoPE + lape.)

Times inference (no_grad) and a training step (forward + backward) of every model, interleaved,
after warm-up, and reports medians, peak memory, parameters, FLOPs, achieved GFLOP/s against a
measured matmul peak, and the ratios to the first model. --amp adds bf16 autocast (CPU) or fp16
(CUDA; --amp-dtype to choose) next to fp32. --kernel-bound also times the backbone's GEMMs and
attention alone, at its shapes: the fastest step, so the highest share of the matmul peak, that
any implementation reaches with this machine's kernels. --segmentor compares whole UPerNets
instead (ViT-B configs: ours, its `_add` twin, and mmseg's vit_deit-b16-ln_mln UPerNet). Writes
benchmark.md, benchmark.png and benchmark.json to --out (--from-json re-renders a saved one).

tools/benchmark.py --sharded-memory CONFIG [--world-size 2] --out DIR
counts instead the per-rank bytes of parameters, gradients and optimizer states when CONFIG's model
trains with DDP and with FSDP (tools/analysis/sharded_memory.py), into sharded_memory.md/.json.
"""
import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import lape_mm  # noqa: E402,F401  (registers LaPEViT)
from tools.analysis.benchmark import AMP_DTYPES, BenchmarkResult, BenchmarkSettings, run_benchmark  # noqa: E402
from tools.analysis.benchmark_models import BACKBONES  # noqa: E402
from tools.analysis.benchmark_report import ratio_lines, write_report  # noqa: E402
from lape_mm.models.backbones import ARCH_ZOO  # noqa: E402
from tools.cli import run_main  # noqa: E402

SEGMENTORS = {
    'upernet-lape': os.path.join(ROOT, 'configs/upernet_lape_vit_b.py'),
    'upernet-add': os.path.join(ROOT, 'configs/upernet_lape_vit_b_add.py'),
    'upernet-mmseg': 'mmseg::vit/vit_deit-b16-ln_mln_upernet_8xb2-160k_ade20k-512x512.py',
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, help='folder for benchmark.md / .png / .json')
    parser.add_argument('--size', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per model; the median is reported')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--arch', choices=tuple(ARCH_ZOO), default='base', help='backbone width (not --segmentor)')
    parser.add_argument('--depth', type=int, help='override the number of blocks (quick runs)')
    parser.add_argument('--models', nargs='+', choices=BACKBONES, default=['lape', 'add', 'timm', 'mmseg'],
                        help='backbones; the first is the reference of the ratios')
    parser.add_argument('--with-cp', action='store_true', help="add 'lape-cp' (with_cp=True) for its memory")
    parser.add_argument('--segmentor', action='store_true', help='compare whole ViT-B UPerNets instead')
    parser.add_argument('--amp', action='store_true', help='also measure autocast (bf16 on CPU, fp16 on CUDA)')
    parser.add_argument('--amp-dtype', choices=tuple(AMP_DTYPES), help='autocast dtype for --amp')
    parser.add_argument('--compile', action='store_true', help='also measure torch.compile\'d backbones')
    parser.add_argument('--kernel-bound', action='store_true',
                        help="also time the backbone's GEMMs and attention alone: the fastest any "
                             'implementation can be with these kernels')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--matmul-size', type=int, default=4096, help='n of the n x n matmul peak measurement')
    parser.add_argument('--sharded-memory', metavar='CONFIG',
                        help='per-rank parameter + gradient + optimizer-state bytes of CONFIG under DDP and FSDP')
    parser.add_argument('--world-size', type=int, default=2, help='ranks of --sharded-memory')
    parser.add_argument('--from-json', help="re-render a saved benchmark.json into --out; measures nothing")
    return parser.parse_args()


def sharded_memory(config: str, world_size: int, out: str) -> None:
    from tools.analysis.sharded_memory import measure, report
    rows = measure(config, world_size)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, 'sharded_memory.json'), 'w') as f:
        json.dump({mode: [asdict(r) for r in ranks] for mode, ranks in rows.items()}, f, indent=1)
    table = report(config, rows)
    with open(os.path.join(out, 'sharded_memory.md'), 'w') as f:
        f.write(f'{table}\n\nCommand: `{shlex.join(["python", "tools/benchmark.py", *sys.argv[1:]])}`\n')
    print(table)


def main() -> None:
    args = parse_args()
    if args.sharded_memory:
        sharded_memory(args.sharded_memory, args.world_size, args.out)
        return
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        result = BenchmarkResult.from_dict(saved)
        write_report(result, args.out, saved.get('command', ''))
        print('\n'.join(ratio_lines(result)))
        return
    if args.segmentor and args.arch != 'base':
        sys.exit(f'--segmentor compares the ViT-B UPerNet configs; drop --arch {args.arch} (--depth works)')
    amp = None
    if args.amp:
        amp = args.amp_dtype or ('float16' if args.device.startswith('cuda') else 'bfloat16')
    settings = BenchmarkSettings(
        models=tuple(args.models) + (('lape-cp',) if args.with_cp else ()),
        segmentors=SEGMENTORS if args.segmentor else {}, arch=args.arch, depth=args.depth,
        size=tuple(args.size), batch=args.batch, threads=args.threads, repeats=args.repeats,
        warmup=args.warmup, amp=amp, compile=args.compile, kernel_bound=args.kernel_bound, device=args.device,
        matmul_size=args.matmul_size)
    result = run_benchmark(settings, log=lambda line: print(line, flush=True))
    command = shlex.join(['python', 'tools/benchmark.py', *sys.argv[1:]])
    for path in write_report(result, args.out, command):
        print(path)
    print('\n'.join(ratio_lines(result)))


if __name__ == '__main__':
    run_main(main)
