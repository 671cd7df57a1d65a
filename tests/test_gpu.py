"""CUDA: LaPEViT gives its CPU results, autocast training stays close to fp32, its inference caches
keep outputs, mmcv's compiled ops run on GPU tensors (what setup promises), ViT-Adapter's deformable
attention gives its CPU result, and the tiny configs train through tools/ in fp32, fp16 and bf16.
Skipped, never passed, without CUDA; ``make test-gpu`` runs these alone, scripts/gpu_check.sh them in
parts. The LaPEViT tests need only mmcv's Python parts (mmcv-lite): the tests of compiled ops import
them themselves and are skipped, saying so, where mmcv has none."""
import copy
import importlib.util
import json
import math
import re

import pytest
import torch

from lape_mm import LaPEViT, LaPEViTAdapter
from lape_mm.models.backbones import PE_JOINS
from lape_mm.models.layers import PE_TYPES

from conftest import TINY_ADAPTER, logged_losses, randomize_adapter, randomize_norms, run_tool, tiny_vit_kwargs
from helpers.tiny_runs import FAMILIES, cfg_options

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')]
CUDA = torch.device('cuda')
needs_mmcv_ops = pytest.mark.skipif(importlib.util.find_spec('mmcv._ext') is None,
                                    reason="mmcv without compiled ops (mmcv-lite): build mmcv's ops (make setup)")
JOIN_TYPE_PAIRS = [(j, t) for j in PE_JOINS for t in PE_TYPES if not (j == 'unshare' and t != 'learnable')]


@pytest.fixture(autouse=True)
def _true_fp32():
    """TF32 matmuls/convolutions differ from the CPU by ~1e-3: compare in full fp32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _step(model: LaPEViT, img: torch.Tensor) -> tuple[list, dict, list]:
    """Training outputs and parameter gradients of a weighted loss, then eval outputs; on the CPU."""
    model.train().zero_grad()
    outs = model(img)
    loss = sum((o * torch.linspace(-1, 1, o.numel(), device=o.device).view_as(o)).mean() for o in outs)
    loss.backward()
    grads = {name: p.grad.cpu() for name, p in model.named_parameters() if p.grad is not None}
    with torch.no_grad():
        evals = [o.cpu() for o in model.eval()(img)]
    return [o.detach().cpu() for o in outs], grads, evals


def _assert_cuda_matches_cpu(model: LaPEViT, img: torch.Tensor) -> None:
    randomize_norms(model)
    cuda_model = copy.deepcopy(model).to(CUDA)
    cpu_outs, cpu_grads, cpu_evals = _step(model, img)
    cuda_outs, cuda_grads, cuda_evals = _step(cuda_model, img.to(CUDA))
    for a, b in zip(cuda_outs + cuda_evals, cpu_outs + cpu_evals, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert cuda_grads.keys() == cpu_grads.keys()
    for name, grad in cpu_grads.items():
        torch.testing.assert_close(cuda_grads[name], grad, atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.parametrize('pe_join, pe_type', JOIN_TYPE_PAIRS)
def test_every_join_and_pe_type_matches_cpu(pe_join, pe_type):
    model = LaPEViT(**tiny_vit_kwargs(pe_join=pe_join, pe_type=pe_type, out_indices=(1, 2)))
    _assert_cuda_matches_cpu(model, torch.randn(2, 3, 80, 112))  # 5x7 grid: the PE is resized


def test_window_attention_matches_cpu():
    model = LaPEViT(**tiny_vit_kwargs(with_cls_token=False, window_size=3, global_attn_indexes=(2,)))
    _assert_cuda_matches_cpu(model, torch.randn(2, 3, 80, 112))  # 5x7 grid: windows need padding


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_training_step_is_finite_and_close_to_fp32(dtype):
    """One forward + backward under CUDA autocast against the same step in true fp32: outputs within 2%
    (relative L2), every gradient finite and pointing the same way (cosine > 0.999)."""
    model = LaPEViT(**tiny_vit_kwargs(embed_dims=192, num_heads=3, num_layers=4, out_indices=(1, 3),
                                      drop_path_rate=0.0)).to(CUDA).train()
    randomize_norms(model)
    img = torch.randn(4, 3, 96, 128, device=CUDA)

    def step(autocast: bool) -> tuple[list, dict]:
        model.zero_grad()
        with torch.autocast(CUDA.type, dtype=dtype, enabled=autocast):
            outs = [o.float() for o in model(img)]
        loss = sum((o * torch.linspace(-1, 1, o.numel(), device=CUDA).view_as(o)).mean() for o in outs)
        (loss * 1000).backward()  # the scale fp16 training applies, so small gradients stay representable
        return [o.detach() for o in outs], {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}

    ref_outs, ref_grads = step(False)
    outs, grads = step(True)
    for out, ref in zip(outs, ref_outs, strict=True):
        assert torch.isfinite(out).all() and (out - ref).norm() < 0.02 * ref.norm()
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
        if ref_grads[name].norm() > 1e-6:
            assert torch.cosine_similarity(grad.flatten(), ref_grads[name].flatten(), dim=0) > 0.999, name


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_inference_caches_keep_outputs_under_autocast(dtype):
    """Eval-mode no_grad outputs with the weight-cast cache equal those without it, call after call,
    across grids, and follow in-place changes of weights and PE (as optimizer steps make)."""
    cached = LaPEViT(**tiny_vit_kwargs()).to(CUDA).eval()
    randomize_norms(cached)
    plain = LaPEViT(**tiny_vit_kwargs(autocast_weight_cache=False)).to(CUDA).eval()
    plain.load_state_dict(cached.state_dict())
    images = [torch.randn(2, 3, 64, 64, device=CUDA), torch.randn(1, 3, 80, 48, device=CUDA)]

    def infer(model: LaPEViT, img: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(CUDA.type, dtype=dtype):
            return model(img)[0]

    first = [infer(cached, img) for img in images]
    for img, out in zip(images * 2, first * 2):
        assert torch.equal(infer(cached, img), out)
        assert torch.equal(infer(plain, img), out)
    with torch.no_grad():
        for model in (cached, plain):
            model.blocks[2].mlp.fc2.weight.mul_(-1)
            model.pos_embed.mul_(2)
    changed = infer(cached, images[0])
    assert not torch.allclose(changed, first[0], atol=1e-2)
    assert torch.equal(changed, infer(plain, images[0]))


# ---------------------------------------------------------------- mmcv's compiled ops
@needs_mmcv_ops
def test_nms_on_cuda_matches_cpu():
    from mmcv.ops import nms
    xy = torch.rand(300, 2) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(300, 2) * 30], dim=1)
    scores = torch.rand(300)
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    cuda_dets, cuda_keep = nms(boxes.to(CUDA), scores.to(CUDA), iou_threshold=0.5)
    assert 0 < len(keep) < 300 and torch.equal(cuda_keep.cpu(), keep)
    torch.testing.assert_close(cuda_dets.cpu(), dets)


@needs_mmcv_ops
def test_roi_align_on_cuda_matches_cpu():
    from mmcv.ops import roi_align
    feats = torch.randn(2, 8, 32, 32, requires_grad=True)
    xy = torch.rand(40, 2) * 24
    rois = torch.cat([torch.randint(0, 2, (40, 1)).float(), xy, xy + 1 + torch.rand(40, 2) * 7], dim=1)
    out = roi_align(feats, rois, (7, 7), 1.0, 2, 'avg', True)
    out.square().sum().backward()
    cuda_feats = feats.detach().to(CUDA).requires_grad_()
    cuda_out = roi_align(cuda_feats, rois.to(CUDA), (7, 7), 1.0, 2, 'avg', True)
    cuda_out.square().sum().backward()
    torch.testing.assert_close(cuda_out.detach().cpu(), out.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cuda_feats.grad.cpu(), feats.grad, atol=1e-4, rtol=1e-4)


@needs_mmcv_ops
def test_multi_scale_deformable_attention_on_cuda_matches_pytorch():
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch
    shapes = torch.tensor([[8, 8], [4, 4]])
    level_start = torch.tensor([0, 64])
    batch, queries, heads, head_dims, points = 2, 10, 4, 8, 3
    value = torch.randn(batch, 80, heads, head_dims, requires_grad=True)
    locations = torch.rand(batch, queries, heads, 2, points, 2)
    weights = torch.rand(batch, queries, heads, 2, points).flatten(-2).softmax(-1).view(batch, queries, heads, 2, points)
    expected = multi_scale_deformable_attn_pytorch(value, shapes, locations, weights)
    expected.square().sum().backward()
    cuda_value = value.detach().to(CUDA).requires_grad_()
    out = MultiScaleDeformableAttnFunction.apply(cuda_value, shapes.to(CUDA), level_start.to(CUDA),
                                                 locations.to(CUDA), weights.to(CUDA), 64)
    out.square().sum().backward()
    torch.testing.assert_close(out.detach().cpu(), expected.detach(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cuda_value.grad.cpu(), value.grad, atol=1e-3, rtol=1e-3)


@needs_mmcv_ops
def test_vit_adapter_matches_cpu():
    """The whole ViT-Adapter, forward and backward: on CUDA its deformable attention is mmcv's
    compiled kernel, on the CPU the PyTorch (grid_sample) version."""
    model = LaPEViTAdapter(**TINY_ADAPTER)
    randomize_adapter(model)
    cuda_model = copy.deepcopy(model).to(CUDA)
    img = torch.randn(2, 3, 64, 96)
    outs, grads = [], []
    for m, x in ((model, img), (cuda_model, img.to(CUDA))):
        m.train().zero_grad()
        out = m(x)
        sum((o * torch.linspace(-1, 1, o.numel(), device=o.device).view_as(o)).mean() for o in out).backward()
        outs.append([o.detach().cpu() for o in out])
        grads.append({n: p.grad.cpu() for n, p in m.named_parameters() if p.grad is not None})
    for a, b in zip(outs[1], outs[0], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert grads[1].keys() == grads[0].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-4, rtol=1e-3, msg=name)


# ---------------------------------------------------------------- end to end through tools/
PRECISIONS = {
    'fp32': ([], {}, 'OptimWrapper'),
    'fp16': (['--amp'], {}, 'AmpOptimWrapper'),  # on CUDA: fp16 with dynamic loss scaling
    'bf16': (['--amp', '--amp-dtype', 'bfloat16'], {}, 'AutocastOptimWrapper'),
}


@needs_mmcv_ops
@pytest.mark.parametrize('precision', PRECISIONS)
@pytest.mark.parametrize('family', ['upernet', 'mask_rcnn'])
def test_tiny_config_trains_on_cuda(family, precision, tmp_path):
    run = FAMILIES[family]
    flags, overrides, wrapper = PRECISIONS[precision]
    work = tmp_path / 'work'
    out = run_tool('tools/train.py', run.config, '--work-dir', str(work), *flags,
                   *cfg_options({**run.options(run.make_data(tmp_path / 'data')), **overrides}))
    assert f"type='{wrapper}'" in out, f'not trained with {wrapper}'
    if precision == 'fp16':
        assert "loss_scale='dynamic'" in out
    assert max(map(int, re.findall(r'memory: (\d+)', out)), default=0) > 0, 'the model did not train on the GPU'
    losses = logged_losses(out)
    assert losses and all(math.isfinite(v) for v in losses), losses
    assert (work / run.checkpoint).exists()


def test_benchmark_tool_on_cuda(tmp_path):
    output = run_tool('tools/benchmark.py', '--device', 'cuda', '--arch', 'tiny', '--depth', '2', '--size', '64', '64',
                      '--repeats', '2', '--amp', '--matmul-size', '512', '--out', str(tmp_path))
    assert 'lape / mmseg: time' in output
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    assert data['device_name'] == torch.cuda.get_device_name()
    assert {row['precision'] for row in data['rows']} == {'fp32', 'float16'}  # --amp is fp16 on CUDA
    for row in data['rows']:
        assert len(row['seconds']) == 2 and row['peak_bytes'] > 0 and row['finite']
