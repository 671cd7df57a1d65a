"""Export a model (or its backbone) to ONNX with dynamic batch, height and width.

tools/export_onnx.py CONFIG CKPT --out FILE [--backbone-only] [--shape H W] [--check H W [H W ...]]

Uses torch.onnx's dynamo exporter (torch.export). The ONNX model takes preprocessed images
[B, 3, H, W] (normalized, H and W multiples of the patch size, 32 for ViT-Adapter) and returns the
backbone's feature maps (--backbone-only; CKPT in any format lape_mm reads, e.g. a segmentor
checkpoint or a timm/DeiT file) or the segmentor's raw logits (mode='tensor'; CKPT from
tools/train.py). After export, onnxruntime is compared with PyTorch at --shape and at each --check
size; --out is written only when every comparison passes.
"""
import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import lape_mm  # noqa: E402,F401  (registers LaPEViT)
from tools.analysis.build import build_model, load_model_weights  # noqa: E402
from tools.analysis.flops import TensorForward  # noqa: E402
from tools.analysis.onnx_export import export_onnx, onnx_max_error  # noqa: E402
from tools.launch import load_config  # noqa: E402
from lape_mm.models.backbones import load_pretrained  # noqa: E402
from tools.cli import run_main  # noqa: E402
from tools.outputs import refuse_overwriting_inputs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--backbone-only', action='store_true', help='export the LaPEViT backbone alone')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='example input size for tracing (default: the backbone img_size)')
    parser.add_argument('--check', type=int, nargs='+', default=[], metavar='H W',
                        help='more sizes to compare onnxruntime with PyTorch at, as H W pairs')
    parser.add_argument('--atol', type=float, default=1e-4, help='largest accepted |onnx - torch|')
    args = parser.parse_args()
    if len(args.check) % 2:
        parser.error(f'--check takes H W pairs, got {len(args.check)} numbers')
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):  # checked now: the export takes a while before it writes
        sys.exit(f'--out folder {out_dir} does not exist; create it first (mkdir -p {out_dir})')
    for out in (args.out, f'{args.out}.data'):  # the model, and its weights when they go to an external file
        refuse_overwriting_inputs('--out', out, {'checkpoint': args.checkpoint, 'config': args.config})

    cfg = load_config(args.config, {'model.pretrained': None, 'model.backbone.init_cfg': None})
    if cfg.get('default_scope') == 'mmdet' and not args.backbone_only:
        sys.exit(f'{args.config} is a detector: its proposals and NMS do not export with dynamic sizes; '
                 f'add --backbone-only (mmdeploy exports whole detectors)')
    if args.backbone_only:
        from mmengine.registry import MODELS
        model = backbone = MODELS.build(cfg.model.backbone)
    else:
        segmentor = build_model(cfg)
        model, backbone = TensorForward(segmentor), segmentor.backbone
    multiple = getattr(backbone, 'size_divisor', backbone.patch_size)
    example = tuple(args.shape or backbone.img_size)
    sizes = [example] + list(zip(args.check[::2], args.check[1::2]))
    for h, w in sizes:
        if h <= 0 or w <= 0 or h % multiple or w % multiple:
            parser.error(f'size {h}x{w} (--shape/--check): {type(backbone).__name__} takes H and W that are '
                         f'positive multiples of {multiple}, e.g. {max(1, round(h / multiple)) * multiple}')
    if args.backbone_only:
        load_pretrained(model, args.checkpoint)
    else:
        load_model_weights(segmentor, args.checkpoint)
    export_checked(model, args.out, example, multiple, sizes, args.atol)
    print(f'wrote {args.out}')


def export_checked(model, out: str, example: tuple[int, int], multiple: int, sizes: list[tuple[int, int]],
                   atol: float) -> None:
    """Export into a temporary folder next to ``out``, compare onnxruntime with PyTorch at each size, and
    only then move the file(s) (with external weights, ``out`` and its ``.data``) into place."""
    out_dir = os.path.dirname(os.path.abspath(out))
    staging = tempfile.mkdtemp(prefix='.export_onnx-', dir=out_dir)
    try:
        staged = os.path.join(staging, os.path.basename(out))
        export_onnx(model, staged, example, multiple)
        for hw in sizes:
            error = onnx_max_error(staged, model, (1, 3, *hw))
            print(f'onnxruntime vs PyTorch at 1x3x{hw[0]}x{hw[1]}: max |diff| = {error:.2e}')
            if error > atol:
                sys.exit(f'onnxruntime differs from PyTorch by {error:.2e} > --atol {atol} at {hw}; {out} '
                         f'not written')
        for name in os.listdir(staging):
            os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == '__main__':
    run_main(main)
