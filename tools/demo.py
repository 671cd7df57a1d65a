"""`make demo`: make the tiny ADE20K-layout dataset, train UPerNet + LaPEViT-T on it on the CPU,
evaluate, and print the mIoU. ``--joins lape add`` trains the baseline twin too and compares."""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, ROOT)

from tools.tiny_data import is_tiny_ade, make_tiny_ade  # noqa: E402
from tools.cli import run_main  # noqa: E402

CONFIGS = {'lape': 'configs/upernet_lape_vit_t_tiny-ade_128x128.py',
           'add': 'configs/upernet_lape_vit_t_tiny-ade_128x128_add.py'}


def run(cmd: list[str]) -> None:
    print('$', ' '.join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def schedule_options(iters: int) -> list[str]:
    """``--cfg-options`` for ``iters`` training iterations: the config's warm-up takes the first tenth
    (its 30 of 300), and its decay the rest."""
    warmup = max(1, iters // 10)
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}', f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}', f'param_scheduler.1.end={iters}']


def evaluate(config: str, work_dir: str) -> dict:
    """tools/test.py on the last checkpoint, in-process so the metrics come back as a dict."""
    from tools.launch import build_runner, load_config
    with open(os.path.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    cfg = load_config(os.path.join(ROOT, config), launcher='none', work_dir=work_dir)
    cfg.load_from = checkpoint
    return build_runner(cfg).test()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--joins', nargs='+', default=['lape'], choices=sorted(CONFIGS))
    parser.add_argument('--iters', type=int, default=300,
                        help='training iterations (at least 2); the first tenth warms the learning rate up')
    args = parser.parse_args()
    if args.iters < 2:
        parser.error(f'--iters must be at least 2 (a warm-up iteration, then the decay), got {args.iters}')
    data = os.path.join(ROOT, 'data/tiny_ade')
    if not is_tiny_ade(os.path.join(data, 'ADEChallengeData2016')):
        print(f'making the tiny dataset in {data}', flush=True)
        make_tiny_ade(data)
    results = {}
    for join in args.joins:
        work_dir = os.path.join(ROOT, 'work_dirs', f'demo_{join}')
        start = time.time()
        run([sys.executable, 'tools/train.py', CONFIGS[join], '--work-dir', work_dir, '--cfg-options',
             *schedule_options(args.iters)])
        metrics = evaluate(CONFIGS[join], work_dir)
        results[join] = (metrics['mIoU'], time.time() - start, work_dir)
    print('\n=== lape_mm demo: UPerNet + ViT-T on tiny ADE20K (CPU) ===')
    for join, (miou, seconds, work_dir) in results.items():
        print(f'pe_join={join:<5} mIoU {miou:6.2f}  ({seconds / 60:.1f} min)  work dir: {work_dir}')


if __name__ == '__main__':
    run_main(main)
