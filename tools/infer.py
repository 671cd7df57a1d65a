"""Segment one image: tools/infer.py CONFIG CHECKPOINT IMAGE [--out mask.png] [--device cpu]."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import numpy as np  # noqa: E402

from lape_mm.apis import segment_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('image')
    parser.add_argument('--out', default='mask.png', help='colour-coded mask PNG (pixel values = class ids)')
    parser.add_argument('--device', help="'cpu' or 'cuda' (default: cuda when available)")
    args = parser.parse_args()
    label = segment_image(args.config, args.checkpoint, args.image, args.out, args.device)
    classes, counts = np.unique(label, return_counts=True)
    top = ', '.join(f'{c}: {n / label.size:.0%}' for c, n in sorted(zip(classes, counts), key=lambda t: -t[1])[:5])
    print(f'wrote {args.out} ({label.shape[1]}x{label.shape[0]}); largest classes {top}')


if __name__ == '__main__':
    main()
