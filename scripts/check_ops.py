"""Setup's last step: the stack imports, and where CUDA exists mmcv's compiled ops run on it.

mmcv built without CUDA ops imports fine and fails only at the first RoIAlign on a GPU tensor;
this makes setup fail instead (LAPE_MM_CPU_OPS=1 accepts CPU-only ops knowingly).
"""
import os
import sys

import mmcv
import mmcv.ops
from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction
import mmdet
import mmseg
import torch

import lape_mm  # noqa: F401


def run_ops_on_cuda() -> None:
    """NMS, RoIAlign and multi-scale deformable attention on CUDA tensors (raises if not built)."""
    cuda = torch.device('cuda')
    boxes = torch.tensor([[0., 0., 4., 4.], [0., 0., 4., 5.]], device=cuda)
    mmcv.ops.nms(boxes, torch.tensor([0.9, 0.8], device=cuda), iou_threshold=0.5)
    rois = torch.tensor([[0., 0., 0., 4., 4.]], device=cuda)
    mmcv.ops.roi_align(torch.rand(1, 2, 8, 8, device=cuda), rois, (2, 2), 1.0, 0, 'avg', True)
    value = torch.rand(1, 16, 2, 4, device=cuda)  # [B, sum(H*W), heads, C/heads] for one 4x4 level
    shapes = torch.tensor([[4, 4]], device=cuda)
    locations = torch.rand(1, 3, 2, 1, 2, 2, device=cuda)  # [B, queries, heads, levels, points, 2]
    weights = torch.full((1, 3, 2, 1, 2), 0.5, device=cuda)
    MultiScaleDeformableAttnFunction.apply(value, shapes, shapes.new_zeros(1), locations, weights, 64)
    torch.cuda.synchronize()


def main() -> None:
    ops = 'cpu'
    if torch.cuda.is_available():
        try:
            run_ops_on_cuda()
            ops = 'cpu+cuda'
        except RuntimeError as error:
            message = (f'[setup] !!! mmcv {mmcv.__version__} was built without CUDA ops, but CUDA is available: '
                       f'{error}\n[setup] !!! Install the CUDA {torch.version.cuda} toolkit (nvcc), set CUDA_HOME '
                       f'and run setup again, or accept CPU-only ops with LAPE_MM_CPU_OPS=1.')
            if os.environ.get('LAPE_MM_CPU_OPS') != '1':
                sys.exit(message)
            print(message, file=sys.stderr)
    print(f'[setup] ok: mmcv {mmcv.__version__} ({ops} ops), mmseg {mmseg.__version__}, mmdet {mmdet.__version__}')


if __name__ == '__main__':
    main()
