"""Segment or detect one image: tools/infer.py CONFIG CHECKPOINT IMAGE [--out FILE] [--device cpu].

A segmentation config writes a colour-coded mask (pixel values = class ids), a detection config
(mmdet scope) the image with its detections drawn on it.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import numpy as np  # noqa: E402

from lape_mm.apis import detect_image, segment_image  # noqa: E402
from tools.launch import load_config  # noqa: E402


def segment(args: argparse.Namespace) -> None:
    label = segment_image(args.config, args.checkpoint, args.image, args.out, args.device)
    classes, counts = np.unique(label, return_counts=True)
    top = ', '.join(f'{c}: {n / label.size:.0%}' for c, n in sorted(zip(classes, counts), key=lambda t: -t[1])[:5])
    print(f'wrote {args.out} ({label.shape[1]}x{label.shape[0]}); largest classes {top}')


def detect(args: argparse.Namespace) -> None:
    pred = detect_image(args.config, args.checkpoint, args.image, args.out, args.device, args.score_thr)
    kept = sum(score >= args.score_thr for score in pred['scores'])
    print(f'wrote {args.out}; {kept} detections with score >= {args.score_thr}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('image')
    parser.add_argument('--out', help='output image (default: mask.png for segmentation, detections.jpg for detection)')
    parser.add_argument('--device', help="'cpu' or 'cuda' (default: cuda when available)")
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection: lowest score drawn and counted')
    args = parser.parse_args()
    is_detector = load_config(args.config).get('default_scope') == 'mmdet'
    args.out = args.out or ('detections.jpg' if is_detector else 'mask.png')
    (detect if is_detector else segment)(args)


if __name__ == '__main__':
    main()
