"""MMCVOpsCPUAutocastHook: mmcv's CPU NMS and RoIAlign under bf16 autocast, only while a run lasts."""
import torch


def test_mmcv_nms_and_roi_align_run_under_cpu_bf16_during_a_run():
    """mmdet hands mmcv's CPU NMS / RoIAlign bf16 tensors under --amp; they compute in fp32 between the
    hook's before_run and after_run, and are mmcv's own again afterwards."""
    import sys
    from mmcv.ops import RoIAlign, batched_nms
    from lape_mm.engine import MMCVOpsCPUAutocastHook
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    ops = {name: getattr(sys.modules[f'mmcv.ops.{name}'], name) for name in ('nms', 'roi_align')}
    hook = MMCVOpsCPUAutocastHook()
    hook.before_run(None)
    try:
        dets, keep = batched_nms(boxes.bfloat16(), scores.bfloat16(), torch.zeros(3, dtype=torch.long),
                                 dict(type='nms', iou_threshold=0.5))
        feats, rois = torch.randn(1, 4, 16, 16), torch.tensor([[0., 2., 2., 9., 9.]])
        align = RoIAlign((3, 3), spatial_scale=1., sampling_ratio=2)
        out = align(feats.bfloat16(), rois.bfloat16())
    finally:
        hook.after_run(None)
    assert keep.tolist() == [0, 2] and dets.dtype == torch.bfloat16
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), align(feats, rois), atol=0.05, rtol=0.02)
    assert {name: getattr(sys.modules[f'mmcv.ops.{name}'], name) for name in ops} == ops
