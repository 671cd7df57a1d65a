"""Segment or detect one image: tools/infer.py CONFIG CHECKPOINT IMAGE [--out FILE] [--device cpu].

A segmentation config writes a colour-coded mask: a .png keeps the class ids as pixel values (a
palette PNG); .jpg and .webp hold the colours only (lossy), with no class ids to read back. A
detection config (mmdet scope) writes the image with its detections drawn on it. The format follows
--out's extension; the file is written whole or not at all, and never over the image, checkpoint
or config it reads.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import numpy as np  # noqa: E402

from lape_mm.apis import detect_image, output_format, segment_image  # noqa: E402
from tools.launch import load_config  # noqa: E402
from tools.cli import run_main  # noqa: E402
from tools.outputs import refuse_overwriting_inputs  # noqa: E402


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
    parser.add_argument('--out', help='output image, its format from the extension (default: mask.png for '
                                      'segmentation, detections.jpg for detection); class ids only in a .png')
    parser.add_argument('--device', help="'cpu' or 'cuda' (default: cuda when available)")
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection: lowest score drawn and counted')
    args = parser.parse_args()
    is_detector = load_config(args.config).get('default_scope') == 'mmdet'
    args.out = args.out or ('detections.jpg' if is_detector else 'mask.png')
    refuse_overwriting_inputs('--out', args.out, {'checkpoint': args.checkpoint, 'config': args.config})
    try:
        output_format(args.out, args.image)
    except ValueError as err:
        parser.error(f'--out: {err}')
    (detect if is_detector else segment)(args)


if __name__ == '__main__':
    run_main(main)
