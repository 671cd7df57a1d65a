"""Write the tiny ImageNet-layout dataset: tools/make_tiny_imagenet.py OUT [--train N --val N --seed S]."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from tools.tiny_data.imagenet import NUM_CLASSES, make_tiny_imagenet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('out', nargs='?', default='data/tiny_imagenet',
                        help='output folder (default data/tiny_imagenet)')
    parser.add_argument('--train', type=int, default=20, help='training images per class')
    parser.add_argument('--val', type=int, default=5, help='validation images per class')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    root = make_tiny_imagenet(args.out, args.train, args.val, args.seed)
    print(f'wrote {NUM_CLASSES} classes x ({args.train} training + {args.val} validation) images to {root}')


if __name__ == '__main__':
    main()
