"""Write the tiny ImageNet-layout dataset: tools/make_tiny_imagenet.py OUT [--train N --val N --seed S] [--force]."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from tools.tiny_data.cli import parse_args  # noqa: E402
from tools.tiny_data.folder import claim_folder  # noqa: E402
from tools.tiny_data.imagenet import NUM_CLASSES, make_tiny_imagenet  # noqa: E402
from tools.cli import run_main  # noqa: E402


def main() -> None:
    args = parse_args(__doc__, 'data/tiny_imagenet', 20, 5, 'images per class')
    claim_folder(args.out, 'imagenet', args.force)
    root = make_tiny_imagenet(args.out, args.train, args.val, args.seed)
    print(f'wrote {NUM_CLASSES} classes x ({args.train} training + {args.val} validation) images to {root}')


if __name__ == '__main__':
    run_main(main)
