"""Convert a timm/DeiT, LaPE-authors, mmseg or mmpretrain ViT checkpoint to lape_mm's layout.

tools/convert_checkpoint.py SRC DST [--img-size 512] [--prefix backbone.]
The output holds ``state_dict`` with native keys (the LaPE authors' / timm layout); with
``--img-size`` the PE is resized to that grid. ``init_cfg=dict(type='Pretrained', ...)`` reads
every supported format directly, so converting is only needed to ship a single format.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import torch  # noqa: E402

from lape_mm.checkpoint import safe_load, to_lape_state_dict  # noqa: E402
from lape_mm.models.layers import infer_grid, resize_pos_embed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--prefix', help="keep only keys under this prefix, e.g. 'backbone.'")
    parser.add_argument('--img-size', type=int, nargs='+', help='resize the PE to this image size (H [W])')
    parser.add_argument('--patch-size', type=int, default=16)
    args = parser.parse_args()
    state_dict, fmt = to_lape_state_dict(safe_load(args.src), args.prefix)
    if args.img_size and 'pos_embed' in state_dict:
        h, w = (args.img_size * 2)[:2]
        pe = state_dict['pos_embed']
        state_dict['pos_embed'] = resize_pos_embed(pe, (h // args.patch_size, w // args.patch_size),
                                                   infer_grid(pe.shape[1] - 1))
    tmp = f'{args.dst}.tmp'
    torch.save({'state_dict': state_dict, 'meta': {'converted_from': fmt}}, tmp)
    os.replace(tmp, args.dst)
    print(f'{args.src} ({fmt}, {len(state_dict)} tensors) -> {args.dst}')


if __name__ == '__main__':
    main()
