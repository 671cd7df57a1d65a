"""Write the tiny COCO-layout dataset: tools/make_tiny_coco.py OUT [--train N --val N --seed S]."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from tools.tiny_data.coco import make_tiny_coco  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('out', nargs='?', default='data/tiny_coco', help='output folder (default data/tiny_coco)')
    parser.add_argument('--train', type=int, default=200, help='training images')
    parser.add_argument('--val', type=int, default=40, help='validation images')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    root = make_tiny_coco(args.out, args.train, args.val, args.seed)
    print(f'wrote {args.train} training and {args.val} validation images to {root}')


if __name__ == '__main__':
    main()
