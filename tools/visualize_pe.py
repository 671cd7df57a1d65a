"""The paper's PE figures for one or more models (e.g. a LaPE config and its `_add` twin).

tools/visualize_pe.py SOURCE [SOURCE ...] --out DIR [--size H W] [--token ROW COL] [--pe-join JOIN]

SOURCE is an mmseg/mmdet config (its LaPEViT backbone is built; its init_cfg checkpoint is loaded
when the file exists) or a checkpoint in any format lape_mm reads. Writes, per source,
NAME_token_similarity.png (one token's PE against all positions, per layer) and
NAME_layer_similarity.png (layer-to-layer PE cosine similarity), plus contact_sheet.png.
For pe_join 'add' (and 'share') the single raw PE is shown: no per-layer PE exists there.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import lape_mm  # noqa: E402,F401  (registers LaPEViT)
from tools.analysis.build import load_backbone  # noqa: E402
from tools.analysis.pe_similarity import layer_pos_embeds, pe_caption, save_figures  # noqa: E402
from tools.cli import run_main  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('sources', nargs='+', metavar='CONFIG_OR_CKPT')
    parser.add_argument('--out', required=True, help='output folder for the PNGs')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='input image size to show the (resized) PE for; default: the PE grid')
    parser.add_argument('--token', type=int, nargs=2, metavar=('ROW', 'COL'),
                        help='grid position whose similarity is shown (default: the centre)')
    parser.add_argument('--pe-join', help="for checkpoints: override the inferred join (e.g. 'lape_independent')")
    args = parser.parse_args()

    inputs = {}
    for source in args.sources:
        model = load_backbone(source, args.pe_join).eval()
        grid = (args.size[0] // model.patch_size, args.size[1] // model.patch_size) if args.size else model.patch_grid
        name = os.path.splitext(os.path.basename(source))[0]
        inputs[name] = (layer_pos_embeds(model, grid), grid, pe_caption(model))
    for path in save_figures(inputs, args.out, tuple(args.token) if args.token else None):
        print(path)


if __name__ == '__main__':
    run_main(main)
