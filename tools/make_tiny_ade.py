"""Write the tiny ADE20K-layout dataset: tools/make_tiny_ade.py OUT [--train N --val N --seed S] [--force]."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from tools.tiny_data.cli import parse_args  # noqa: E402
from tools.tiny_data.folder import claim_folder  # noqa: E402
from tools.tiny_data import make_tiny_ade  # noqa: E402
from tools.cli import run_main  # noqa: E402


def main() -> None:
    args = parse_args(__doc__, 'data/tiny_ade', 200, 40)
    claim_folder(args.out, 'ade', args.force)
    root = make_tiny_ade(args.out, args.train, args.val, args.seed)
    print(f'wrote {args.train} training and {args.val} validation images to {root}')


if __name__ == '__main__':
    run_main(main)
