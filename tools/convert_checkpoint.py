"""Convert a ViT checkpoint between formats: any supported one in, lape_mm's or the LaPE authors' out.

tools/convert_checkpoint.py SRC DST [--img-size 512] [--prefix backbone.] [--to {lape_mm,authors}]

In: timm/DeiT, the LaPE authors' DeiT fork (every join and PE type), mmseg, mmpretrain or lape_mm, as
.pth or .safetensors. ``--to lape_mm`` (default) writes ``state_dict`` with native keys and the PE grid
in ``meta``; a DST ending in ``.safetensors`` is a safetensors file instead (the same keys, the grid in
its metadata), which timm and lape_mm read. ``--img-size`` first resizes the PE to that image's grid.
``--to authors`` writes ``{'model': ...}`` as their ``main.py`` reads it (``--eval --resume DST``):
per-block PEs as ``pos_embed{i}`` and a '1D_sin' table 2-D, as their model holds them.
``init_cfg=dict(type='Pretrained', ...)`` reads every supported format directly, so converting is
only needed to ship a single format.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import safetensors.torch  # noqa: E402
import torch  # noqa: E402

from lape_mm.checkpoint import CheckpointError, read_checkpoint  # noqa: E402
from lape_mm.fileio import atomic_write  # noqa: E402
from lape_mm.models.layers import build_fixed_pos_embed, infer_grid, resize_pos_embed  # noqa: E402
from tools.cli import run_main  # noqa: E402

SAFETENSORS_SUFFIX = '.safetensors'


def is_sincos_1d_table(pos_embed: torch.Tensor, grid: tuple[int, int]) -> bool:
    """Whether a PE ``[1, 1 + N, C]`` is the authors' fixed '1D_sin' table."""
    table = build_fixed_pos_embed('sincos_1d', grid, pos_embed.shape[-1])
    return pos_embed.shape == table.shape and torch.allclose(pos_embed.float(), table, atol=1e-6)


def to_authors(state_dict: dict, one_d_table: bool = False) -> dict:
    """Native keys to the authors' layout (the inverse of lape_mm's ``convert_timm``): per-block PEs as
    ``pos_embed{i}``, and with ``one_d_table`` (a '1D_sin' model) the PE as their 2-D ``[1 + N, C]`` table."""
    state_dict = dict(state_dict)
    pe = state_dict.get('pos_embed')
    if pe is not None and pe.shape[0] > 1:
        state_dict.pop('pos_embed')
        state_dict.update({f'pos_embed{i}': copy[None].clone() for i, copy in enumerate(pe)})
    elif pe is not None and one_d_table:
        state_dict['pos_embed'] = pe[0]
    return state_dict


def convert(src: str, dst: str, prefix: str | None = None, img_size: list[int] | None = None,
            patch_size: int = 16, to: str = 'lape_mm') -> str:
    """Write ``src`` to ``dst`` (atomically) in the ``to`` layout; returns the source format."""
    if to == 'authors' and dst.endswith(SAFETENSORS_SUFFIX):
        raise CheckpointError(f'--to authors writes the .pth their main.py reads (torch.load(DST)["model"]); '
                              f'{dst} ends in {SAFETENSORS_SUFFIX}: name it .pth, or leave out --to authors')
    state_dict, fmt, grid = read_checkpoint(src, prefix)
    pe = state_dict.get('pos_embed')
    if pe is not None:
        grid = grid or infer_grid(pe.shape[1] - 1)
        if img_size:
            h, w = (img_size * 2)[:2]
            new_grid = (h // patch_size, w // patch_size)
            state_dict['pos_embed'] = resize_pos_embed(pe, new_grid, grid)
            grid = new_grid
    with atomic_write(dst) as tmp:  # (creates dst's folder, e.g. pretrain/ as the docs use it)
        if to == 'authors':
            one_d = pe is not None and is_sincos_1d_table(state_dict['pos_embed'], grid)
            torch.save({'model': to_authors(state_dict, one_d_table=one_d)}, tmp)
        elif dst.endswith(SAFETENSORS_SUFFIX):  # contiguous tensors that share no memory, as the format requires
            tensors = {k: v.contiguous().clone() for k, v in state_dict.items()}
            grid_meta = {'pos_embed_grid': json.dumps(grid)} if grid else {}
            safetensors.torch.save_file(tensors, tmp, metadata={'format': 'pt', 'converted_from': fmt, **grid_meta})
        else:
            torch.save({'state_dict': state_dict, 'meta': {'converted_from': fmt, 'pos_embed_grid': grid}}, tmp)
    return fmt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--prefix', help="keep only keys under this prefix, e.g. 'backbone.'")
    parser.add_argument('--img-size', type=int, nargs='+',
                        help='resize the PE to this image size (H [W], multiples of the patch size)')
    parser.add_argument('--patch-size', type=int, help='the model\'s patch size, for --img-size (default 16)')
    parser.add_argument('--to', choices=('lape_mm', 'authors'), default='lape_mm',
                        help="output layout: lape_mm's (default) or the LaPE authors' DeiT fork")
    args = parser.parse_args()
    if args.patch_size is not None and not args.img_size:
        parser.error('--patch-size only sets the PE grid of --img-size; give --img-size too, or drop it')
    patch_size = 16 if args.patch_size is None else args.patch_size
    if patch_size < 1:
        parser.error(f'--patch-size must be positive, got {patch_size}')
    if args.img_size and (len(args.img_size) > 2 or any(s < 1 or s % patch_size for s in args.img_size)):
        parser.error(f'--img-size takes H [W], positive multiples of the patch size {patch_size} (LaPEViT refuses '
                     f'other sizes), got {args.img_size}')
    fmt = convert(args.src, args.dst, args.prefix, args.img_size, patch_size, args.to)
    print(f'{args.src} ({fmt}) -> {args.dst} ({args.to} layout)')


if __name__ == '__main__':
    run_main(main)
