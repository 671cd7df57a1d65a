"""LaPEViTAdapter: ViT-Adapter with a LaPE ViT, against a reference written from the paper's equations."""
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from lape_mm.errors import ConfigError
from lape_mm.models import LaPEViTAdapter
from lape_mm.models.layers.adapter_modules import deform_inputs
from lape_mm.models.layers.ms_deform_attn import MSDeformAttn, deformable_sampling

from conftest import (ROOT, assert_baseline_twin, build_model, forward_counts, logged_metrics, randomize_adapter, run_tool,
                      tiny_adapter)
from helpers.tiny_runs import ADAPTER, ADAPTER_LAYERS, cfg_options, seg_options


# ---------------------------------------------------------------- reference (the paper's equations)
def _ln(sd, name, x):
    return F.layer_norm(x, x.shape[-1:], sd[name + '.weight'], sd[name + '.bias'], 1e-6)


def _linear(sd, name, x):
    return F.linear(x, sd[name + '.weight'], sd[name + '.bias'])


def _bn(sd, name, x):
    return F.batch_norm(x, sd[name + '.running_mean'], sd[name + '.running_var'], sd[name + '.weight'],
                        sd[name + '.bias'], False, 0., 1e-5)


def ref_deform_attn(sd, name, query, ref_points, feat, shapes, heads, points):
    """sum over levels l and points k of softmax weight * bilinear sample of value_l at
    ref + offset / (w_l, h_l), then the output projection (no residual)."""
    B, Q, _ = query.shape
    value = _linear(sd, name + '.value_proj', feat)
    d = value.shape[-1] // heads
    offsets = _linear(sd, name + '.sampling_offsets', query).view(B, Q, heads, len(shapes), points, 2)
    weights = _linear(sd, name + '.attention_weights', query).view(B, Q, heads, -1).softmax(-1)
    weights = weights.view(B, Q, heads, len(shapes), points)
    out, start = 0., 0
    for level, (h, w) in enumerate(shapes):
        v = value[:, start:start + h * w].reshape(B, h, w, heads, d).permute(0, 3, 4, 1, 2).reshape(B * heads, d, h, w)
        loc = ref_points[:, :, None, 0, None, :] + offsets[:, :, :, level] / torch.tensor([w, h], dtype=query.dtype)
        grid = (2 * loc - 1).transpose(1, 2).reshape(B * heads, Q, points, 2)
        samples = F.grid_sample(v, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
        samples = samples.view(B, heads, d, Q, points)  # [B, heads, d, Q, points]
        out = out + (samples * weights[:, :, :, level].permute(0, 2, 1, 3)[:, :, None]).sum(-1)
        start += h * w
    return _linear(sd, name + '.output_proj', out.permute(0, 3, 1, 2).reshape(B, Q, -1))


def ref_attention(sd, name, y, hw, heads, window):
    """Softmax attention; with a window, q/k/v are zero-padded to whole windows (padded keys
    still take part in the softmax with logit 0) and the output cropped."""
    B, N, C = y.shape
    qkv = _linear(sd, name + '.qkv', y)
    if window:
        h, w = hw
        H, W = math.ceil(h / window) * window, math.ceil(w / window) * window
        grid = F.pad(qkv.view(B, h, w, 3 * C), (0, 0, 0, W - w, 0, H - h))
        qkv = grid.view(B, H // window, window, W // window, window, 3 * C).permute(0, 1, 3, 2, 4, 5)
        qkv = qkv.reshape(-1, window * window, 3 * C)
    q, k, v = qkv.view(qkv.shape[0], qkv.shape[1], 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    out = ((q @ k.transpose(-1, -2)) / math.sqrt(C // heads)).softmax(-1) @ v
    out = out.transpose(1, 2).reshape(qkv.shape[0], qkv.shape[1], C)
    if window:
        out = out.view(B, H // window, W // window, window, window, C).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(B, H, W, C)[:, :hw[0], :hw[1]].reshape(B, N, C)
    return _linear(sd, name + '.proj', out)


def _layer_scale(sd, block, j):
    """Block ``block``'s layer scale ``j``: the original names it ``gamma{j}``, lape_mm ``ls{j}.gamma``; 1 without."""
    return sd.get(f'{block}.gamma{j}', sd.get(f'{block}.ls{j}.gamma', 1.))


def ref_block(sd, i, x, hw, pe, heads, window):
    """``x + g1 * attn(norm1(x) + pe)``, then ``x + g2 * mlp(norm2(x))``."""
    name = f'blocks.{i}'
    y = _ln(sd, name + '.norm1', x) + (0 if pe is None else pe)
    x = x + _layer_scale(sd, name, 1) * ref_attention(sd, name + '.attn', y, hw, heads, window)
    hidden = F.gelu(_linear(sd, name + '.mlp.fc1', _ln(sd, name + '.norm2', x)))
    return x + _layer_scale(sd, name, 2) * _linear(sd, name + '.mlp.fc2', hidden)


def ref_spm(sd, img):
    """Three conv-BN-ReLU (stride 2, 1, 1), max-pool, three more (stride 2); 1x1 convs to C."""
    def conv_bn_relu(x, conv, bn, stride):
        return F.relu(_bn(sd, bn, F.conv2d(x, sd[conv + '.weight'], stride=stride, padding=1)))
    x = img
    for idx, stride in ((0, 2), (3, 1), (6, 1)):
        x = conv_bn_relu(x, f'spm.stem.{idx}', f'spm.stem.{idx + 1}', stride)
    c = [F.max_pool2d(x, 3, 2, 1)]
    for level in (2, 3, 4):
        c.append(conv_bn_relu(c[-1], f'spm.conv{level}.0', f'spm.conv{level}.1', 2))
    return [F.conv2d(m, sd[f'spm.fc{i + 1}.weight'], sd[f'spm.fc{i + 1}.bias']) for i, m in enumerate(c)]


def ref_cffn(sd, name, c, shapes):
    """fc1, a 3x3 depth-wise conv on each level's map, GELU, fc2. The original nests the conv in a
    ``DWConv`` module (``dwconv.dwconv``), lape_mm does not (``dwconv``)."""
    conv = name + ('.dwconv.dwconv' if name + '.dwconv.dwconv.weight' in sd else '.dwconv')
    hidden = _linear(sd, name + '.fc1', c)
    parts, start = [], 0
    for h, w in shapes:
        m = hidden[:, start:start + h * w].transpose(1, 2).reshape(c.shape[0], -1, h, w)
        m = F.conv2d(m, sd[conv + '.weight'], sd[conv + '.bias'], padding=1, groups=m.shape[1])
        parts.append(m.flatten(2).transpose(1, 2))
        start += h * w
    return _linear(sd, name + '.fc2', F.gelu(torch.cat(parts, 1)))


def reference_adapter(sd: dict, img: torch.Tensor, block_pes=None, input_pe=None, residual_pes=None, heads=3,
                      window=3, global_blocks=(1, 3), stages=((0, 1), (2, 3)), deform_heads=6, points=2,
                      per_stage=False, with_cffn=True, extra_extractor=True, add_vit_feature=True):
    """ViT-Adapter's forward (detection variant: layer scale, extra extractors) from its equations,
    reading the weights ``sd`` (a model's state dict, or the original's layout). The ViT gets
    ``input_pe`` once, ``block_pes[l]`` inside block l, or ``residual_pes[l]`` added to the tokens
    before block l. ``per_stage``: stage i's tokens go to output i (the segmentation variant).
    ``with_cffn``, ``extra_extractor`` and ``add_vit_feature`` as the original's options."""
    B, _, H, W = img.shape
    hw = (H // 16, W // 16)
    pyramid = [(H // s, W // s) for s in (8, 16, 32)]
    c1, *levels = ref_spm(sd, img)
    c = torch.cat([m.flatten(2).transpose(1, 2) + sd['level_embed'][i] for i, m in enumerate(levels)], 1)
    x = F.conv2d(img, sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'], stride=16).flatten(2).transpose(1, 2)
    if input_pe is not None:
        x = x + input_pe

    def centres(shapes):  # normalized (x, y) of each cell centre, row-major
        pts = [torch.stack([((torch.arange(w) + .5) / w).repeat(h), ((torch.arange(h) + .5) / h).repeat_interleave(w)],
                           -1) for h, w in shapes]
        return torch.cat(pts)[None, :, None].to(img.dtype)

    vit_points, pyramid_points = centres([hw]), centres(pyramid)
    stage_tokens = []
    for stage, (first, last) in enumerate(stages):
        name = f'interactions.{stage}'
        attn = ref_deform_attn(sd, name + '.injector.attn', _ln(sd, name + '.injector.query_norm', x), vit_points,
                               _ln(sd, name + '.injector.feat_norm', c), pyramid, deform_heads, points)
        x = x + sd[name + '.injector.gamma'] * attn
        for i in range(first, last + 1):
            if residual_pes is not None:
                x = x + residual_pes[i]
            pe = None if block_pes is None else block_pes[i]
            x = ref_block(sd, i, x, hw, pe, heads, 0 if i in global_blocks else window)
        extractors = [name + '.extractor'] + ([f'{name}.extra_extractors.{j}' for j in range(2)]
                                              if extra_extractor and stage == len(stages) - 1 else [])
        for ext in extractors:
            c = c + ref_deform_attn(sd, ext + '.attn', _ln(sd, ext + '.query_norm', c), pyramid_points,
                                    _ln(sd, ext + '.feat_norm', x), [hw], deform_heads, points)
            if with_cffn:
                c = c + ref_cffn(sd, ext + '.ffn', _ln(sd, ext + '.ffn_norm', c), pyramid)
        stage_tokens.append(x.transpose(1, 2).reshape(B, -1, *hw))
    sizes = [h * w for h, w in pyramid]
    c2, c3, c4 = [part.transpose(1, 2).reshape(B, -1, h, w) for part, (h, w) in zip(c.split(sizes, 1), pyramid)]
    c1 = c1 + F.conv_transpose2d(c2, sd['up.weight'], sd['up.bias'], stride=2)
    vit = stage_tokens if per_stage else stage_tokens[-1:] * 4
    vit = [v if f == 1 else F.interpolate(v, scale_factor=f, mode='bilinear', align_corners=False)
           for v, f in zip(vit, (4., 2., 1., .5))]
    maps = [c1, c2, c3, c4]
    if add_vit_feature:
        maps = [m + v for m, v in zip(maps, vit)]
    return [_bn(sd, f'norm{i + 1}', m) for i, m in enumerate(maps)]


def grid_pe(model: LaPEViTAdapter, hw) -> torch.Tensor:
    """The PE's patch slots, bicubically resized from the pretraining grid to ``hw``: ``[copies, h*w, C]``
    (one copy per block for 'unshare')."""
    pe = model.state_dict()['pos_embed'][:, 1:]
    side = math.isqrt(pe.shape[1])
    pe = pe.reshape(len(pe), side, side, -1).permute(0, 3, 1, 2)
    return F.interpolate(pe, size=hw, mode='bicubic', align_corners=False).flatten(2).transpose(1, 2)


def lape_block_pes(model: LaPEViTAdapter, hw, independent: bool = False):
    """The hand-written LaPE terms: ``p_l = LN_l(p_{l-1})``, or ``LN_l(p)`` when ``independent``."""
    sd, pe = model.state_dict(), grid_pe(model, hw)
    pes = []
    for i in range(model.num_layers):
        pes.append(_ln(sd, f'blocks.{i}.pe_norm', pe if independent or not pes else pes[-1]))
    return pes


# ---------------------------------------------------------------- parity
@pytest.mark.parametrize('pe_join', ['add', 'lape', 'lape_independent'])
@pytest.mark.parametrize('size', [(96, 96), (64, 96)])  # token grids 6x6 (whole windows of 3) and 4x6 (padded)
def test_matches_reference(pe_join, size):
    """float64, random weights and BN statistics, non-zero injector and layer-scale gammas."""
    model = tiny_adapter(pe_join=pe_join, layer_scale=True).double().eval()
    randomize_adapter(model)
    img = torch.randn(2, 3, *size, dtype=torch.float64)
    hw = (size[0] // 16, size[1] // 16)
    if pe_join == 'add':
        kwargs = dict(input_pe=grid_pe(model, hw))
    else:
        kwargs = dict(block_pes=lape_block_pes(model, hw, independent=pe_join == 'lape_independent'))
    with torch.no_grad():
        outs = model(img)
        expected = reference_adapter(model.state_dict(), img, **kwargs)
    for out, exp, stride in zip(outs, expected, (4, 8, 16, 32)):
        assert out.shape == (2, 48, size[0] // stride, size[1] // stride)
        torch.testing.assert_close(out, exp, rtol=1e-10, atol=1e-10)


def test_window_padding_of_qkv_differs_from_vitdet_only_on_padded_grids():
    """Zero q/k/v (ViT-Adapter) and a zero block input (ViTDet) agree when windows tile the grid."""
    from lape_mm.models.layers import LaPEBlock
    blocks = [LaPEBlock(48, 3, torch.nn.LayerNorm, window_size=3, window_pad=pad) for pad in ('qkv', 'input')]
    blocks[1].load_state_dict(blocks[0].state_dict())
    for hw, same in (((6, 6), True), ((4, 6), False)):
        x = torch.randn(1, hw[0] * hw[1], 48)
        assert torch.allclose(blocks[0](x, hw=hw), blocks[1](x, hw=hw), atol=1e-6) == same


def _parity(img_hw=(64, 96), **options):
    """A float64 model with random weights, and its outputs with the reference's (4x6 token grid: padded windows)."""
    model = tiny_adapter(layer_scale=True, **options).double().eval()
    randomize_adapter(model)
    img = torch.randn(1, 3, *img_hw, dtype=torch.float64)
    with torch.no_grad():
        return model, img, model(img)


@pytest.mark.parametrize('option', [dict(with_cffn=False), dict(use_extra_extractor=False),
                                    dict(add_vit_feature=False), dict(deform_ratio=0.5)], ids=str)
def test_non_default_options_match_reference(option):
    """The original's options besides the defaults: extractors without ConvFFN, no extra extractors,
    no ViT features in the outputs, value projections at half width."""
    model, img, outs = _parity(pe_join='lape', **option)
    flags = {k: v for k, v in option.items() if k in ('with_cffn', 'add_vit_feature')}
    if 'use_extra_extractor' in option:
        flags['extra_extractor'] = option['use_extra_extractor']
    expected = reference_adapter(model.state_dict(), img, block_pes=lape_block_pes(model, (4, 6)), **flags)
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('pe_join,pe_type', [('share', 'learnable'), ('unshare', 'learnable'), ('lape', 'sincos_2d'),
                                             ('add', 'sincos_1d'), ('lape', 'none')])
def test_other_joins_and_pe_types_match_reference(pe_join, pe_type):
    """'share' adds the PE, 'unshare' block l's own PE, to the tokens before every block; the fixed
    tables enter where a learnable PE would; 'none' has no PE at all."""
    model, img, outs = _parity(pe_join=pe_join, pe_type=pe_type)
    hw = (4, 6)
    if pe_type == 'none':
        kwargs = {}
    elif pe_join == 'add':
        kwargs = dict(input_pe=grid_pe(model, hw))
    elif pe_join == 'lape':
        kwargs = dict(block_pes=lape_block_pes(model, hw))
    else:
        pe = grid_pe(model, hw)
        kwargs = dict(residual_pes=[pe[i:i + 1] if pe_join == 'unshare' else pe for i in range(model.num_layers)])
    for out, exp in zip(outs, reference_adapter(model.state_dict(), img, **kwargs)):
        torch.testing.assert_close(out, exp, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- deformable attention
def _deform_case(dim=48, heads=6, points=2, hw=(4, 6), batch=2):
    attn = MSDeformAttn(dim, heads, 3, points).double()
    randomize_adapter(attn)
    injector_inputs, _ = deform_inputs(hw, torch.device('cpu'))
    shapes = [tuple(s) for s in injector_inputs.spatial_shapes.tolist()]
    query = torch.randn(batch, hw[0] * hw[1], dim, dtype=torch.float64)
    feat = torch.randn(batch, sum(h * w for h, w in shapes), dim, dtype=torch.float64)
    return attn, injector_inputs, shapes, query, feat


def test_deformable_attention_matches_reference():
    attn, inputs, shapes, query, feat = _deform_case()
    out = attn(query, inputs.reference_points, feat, inputs.spatial_shapes, inputs.level_start_index)
    weights = {'attn.' + k: v for k, v in attn.state_dict().items()}
    expected = ref_deform_attn(weights, 'attn', query, inputs.reference_points.double(), feat, shapes, 6, 2)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_mmcv_module_adds_its_query_as_a_residual():
    """Why mmcv's ``MultiScaleDeformableAttention`` is not used as is: with the same weights it
    returns ours plus its (normalized) query input, which ViT-Adapter does not add."""
    from mmcv.ops import MultiScaleDeformableAttention
    attn, inputs, _, query, feat = _deform_case()
    mmcv_attn = MultiScaleDeformableAttention(48, num_heads=6, num_levels=3, num_points=2, dropout=0.,
                                              batch_first=True).double()
    mmcv_attn.load_state_dict(attn.state_dict())
    ours = attn(query, inputs.reference_points, feat, inputs.spatial_shapes, inputs.level_start_index)
    theirs = mmcv_attn(query, value=feat, reference_points=inputs.reference_points.expand(2, -1, 3, -1),
                       spatial_shapes=inputs.spatial_shapes, level_start_index=inputs.level_start_index)
    torch.testing.assert_close(theirs - query, ours)


def test_sampling_runs_in_fp32_under_autocast():
    attn, inputs, _, query, feat = _deform_case()
    value = torch.randn(2, feat.shape[1], 6, 8, dtype=torch.bfloat16)
    locations = torch.rand(2, 24, 6, 3, 2, 2, dtype=torch.bfloat16)
    weights = torch.rand(2, 24, 6, 3, 2, dtype=torch.bfloat16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = deformable_sampling(value, inputs.spatial_shapes, inputs.level_start_index, locations, weights)
    assert out.dtype == torch.float32
    expected = deformable_sampling(value.float(), inputs.spatial_shapes, inputs.level_start_index, locations.float(),
                                   weights.float())
    torch.testing.assert_close(out, expected)


# ---------------------------------------------------------------- training
@pytest.mark.parametrize('pe_join', ['add', 'lape'])
def test_every_trainable_parameter_gets_a_gradient(pe_join):
    """Random weights, drop path on. (At the original's init some gradients are zero until the
    first step: with zero injector gammas the injectors', with Deformable DETR's zero offset and
    attention-weight layers the query norms'.)"""
    model = tiny_adapter(pe_join=pe_join, layer_scale=True, drop_path_rate=0.1).train()
    randomize_adapter(model)
    sum(o.square().mean() for o in model(torch.randn(2, 3, 64, 96))).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing


def test_bf16_autocast_forward_and_backward():
    model = tiny_adapter(pe_join='lape', layer_scale=True, init_values=0.5).eval()
    img = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        full = model(img)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(img)
    for out, ref in zip(outs, full):
        assert torch.isfinite(out).all()
        assert (out.float() - ref).norm() / ref.norm() < 0.05
    model.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = sum(o.float().square().mean() for o in model(img))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_with_cp_reruns_blocks_and_adapters_in_backward_and_gives_same_gradients():
    grads = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = tiny_adapter(with_cp=with_cp, init_values=0.5).train()
        checkpointed = {name: m for name, m in model.named_modules() if name.endswith(('injector', 'extractor'))}
        checkpointed.update({f'blocks.{i}': block for i, block in enumerate(model.blocks)})
        with forward_counts(checkpointed) as counts:
            sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
        assert any(n.endswith('injector') for n in counts) and set(counts.values()) == {1 + with_cp}, counts
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


# ---------------------------------------------------------------- arguments
def test_input_not_multiple_of_32_is_named():
    with pytest.raises(ValueError, match='multiples of 32, got 64x80'):
        tiny_adapter()(torch.randn(1, 3, 64, 80))


@pytest.mark.parametrize('kwargs, message', [
    (dict(interaction_indexes=[[0, 1], [3, 3]]), 'consecutive'),
    (dict(interaction_indexes=[[0, 2]]), r'blocks 0\.\.3'),
    (dict(with_cls_token=True), 'with_cls_token'),
    (dict(out_indices=(1, 3)), 'out_indices'),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_adapter(**kwargs)


def test_per_stage_vit_features_match_reference():
    """The segmentation variant: stage i's tokens are added to output i."""
    stages = ((0, 0), (1, 1), (2, 2), (3, 3))
    model = tiny_adapter(pe_join='lape', layer_scale=True, interaction_indexes=stages, vit_features='stages')
    model = model.double().eval()
    randomize_adapter(model)
    img = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        outs = model(img)
        expected = reference_adapter(model.state_dict(), img, block_pes=lape_block_pes(model, (4, 6)),
                                     stages=stages, per_stage=True)
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- checkpoints
def original_layout(dim=48, depth=4, stages=2, inplanes=8, heads=6, points=2, cffn_hidden=12) -> dict:
    """The tiny adapter's tensors as the original code (czczup/ViT-Adapter, detection ``ViTAdapter`` with
    ``layer_scale=True``, SyncBN norms) names them, with their shapes: ``{name: shape}``. Written out from
    that code's modules, not from lape_mm's converter: TIMMVisionTransformer (no cls token, no final
    norm), Block (``gamma1``/``gamma2``), SpatialPriorModule (``stem``/``conv2..4`` Sequentials of conv,
    BN, ReLU; ``fc1..4``), InteractionBlock (``injector``, ``extractor``, the last one's two
    ``extra_extractors``), Extractor's ConvFFN (``ffn.dwconv.dwconv``, a DWConv module), MSDeformAttn."""
    def linear(name, out, inp):
        return {f'{name}.weight': (out, inp), f'{name}.bias': (out,)}

    def norm(name, width=dim):
        return {f'{name}.weight': (width,), f'{name}.bias': (width,)}

    def bn(name, width):
        return {**norm(name, width), f'{name}.running_mean': (width,), f'{name}.running_var': (width,),
                f'{name}.num_batches_tracked': ()}

    def deform(name, levels):
        return {**linear(f'{name}.sampling_offsets', heads * levels * points * 2, dim),
                **linear(f'{name}.attention_weights', heads * levels * points, dim),
                **linear(f'{name}.value_proj', dim, dim), **linear(f'{name}.output_proj', dim, dim)}

    def extractor(name):
        return {**norm(f'{name}.query_norm'), **norm(f'{name}.feat_norm'), **deform(f'{name}.attn', 1),
                **linear(f'{name}.ffn.fc1', cffn_hidden, dim), f'{name}.ffn.dwconv.dwconv.weight': (cffn_hidden, 1, 3, 3),
                f'{name}.ffn.dwconv.dwconv.bias': (cffn_hidden,), **linear(f'{name}.ffn.fc2', dim, cffn_hidden),
                **norm(f'{name}.ffn_norm')}

    layout = {'pos_embed': (1, 17, dim), 'patch_embed.proj.weight': (dim, 3, 16, 16), 'patch_embed.proj.bias': (dim,),
              'level_embed': (3, dim), 'up.weight': (dim, dim, 2, 2), 'up.bias': (dim,)}
    for i in range(depth):
        b = f'blocks.{i}'
        layout.update({**norm(f'{b}.norm1'), **linear(f'{b}.attn.qkv', 3 * dim, dim), **linear(f'{b}.attn.proj', dim, dim),
                       **norm(f'{b}.norm2'), **linear(f'{b}.mlp.fc1', 4 * dim, dim), **linear(f'{b}.mlp.fc2', dim, 4 * dim),
                       f'{b}.gamma1': (dim,), f'{b}.gamma2': (dim,)})
    widths = {'stem.0': (inplanes, 3), 'stem.3': (inplanes, inplanes), 'stem.6': (inplanes, inplanes),
              'conv2.0': (2 * inplanes, inplanes), 'conv3.0': (4 * inplanes, 2 * inplanes),
              'conv4.0': (4 * inplanes, 4 * inplanes)}
    for conv, (out, inp) in widths.items():
        layout[f'spm.{conv}.weight'] = (out, inp, 3, 3)
        layout.update(bn(f'spm.{conv[:-1]}{int(conv[-1]) + 1}', out))
    for level, width in enumerate((1, 2, 4, 4), 1):
        layout.update({f'spm.fc{level}.weight': (dim, width * inplanes, 1, 1), f'spm.fc{level}.bias': (dim,)})
    for j in range(stages):
        name = f'interactions.{j}'
        layout.update({**norm(f'{name}.injector.query_norm'), **norm(f'{name}.injector.feat_norm'),
                       **deform(f'{name}.injector.attn', 3), f'{name}.injector.gamma': (dim,),
                       **extractor(f'{name}.extractor')})
    for k in range(2):
        layout.update(extractor(f'interactions.{stages - 1}.extra_extractors.{k}'))
    for level in range(1, 5):
        layout.update(bn(f'norm{level}', dim))
    return layout


def original_checkpoint(seed: int = 0) -> dict:
    """Random float64 tensors in :func:`original_layout` (BN variances positive, norms around 1)."""
    g = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in original_layout().items():
        if name.endswith('num_batches_tracked'):
            weights[name] = torch.tensor(10)
        elif name.endswith('running_var'):
            weights[name] = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
        elif len(shape) == 1 and name.endswith(('weight', 'gamma', 'gamma1', 'gamma2')):
            weights[name] = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5
        else:
            weights[name] = torch.randn(shape, generator=g, dtype=torch.float64) * 0.2
    return weights


def _pretrained(path, **overrides) -> LaPEViTAdapter:
    model = tiny_adapter(init_cfg=dict(type='Pretrained', checkpoint=str(path)), **overrides)
    model.init_weights()
    return model


def test_original_detector_checkpoint_loads_through_init_cfg(tmp_path):
    """An mmdet-2.x ViT-Adapter detector checkpoint in the original's layout (:func:`original_layout`),
    ``backbone.*`` next to neck weights, loads strictly (every tensor placed) and gives the outputs that
    the reference computes from the original-named weights."""
    weights = original_checkpoint()
    checkpoint = {'state_dict': {**{'backbone.' + k: v for k, v in weights.items()},
                                 'neck.lateral_convs.0.conv.weight': torch.zeros(1)}, 'meta': {}}
    torch.save(checkpoint, tmp_path / 'vit_adapter.pth')
    model = tiny_adapter(pe_join='add', layer_scale=True, init_cfg=dict(type='Pretrained', checkpoint=str(
        tmp_path / 'vit_adapter.pth'))).double().eval()
    model.init_weights()  # (in float64, so the weights arrive unrounded)
    assert len(model.state_dict()) == len(weights)
    img = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    pe = weights['pos_embed'][:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    pe = F.interpolate(pe, size=(4, 6), mode='bicubic', align_corners=False).flatten(2).transpose(1, 2)
    with torch.no_grad():
        outs = model(img)
    for out, exp in zip(outs, reference_adapter(weights, img, input_pe=pe)):
        torch.testing.assert_close(out, exp, rtol=1e-10, atol=1e-10)


def test_plain_vit_checkpoint_leaves_the_adapter_fresh(tmp_path):
    """A DeiT/timm ViT: the ViT's tensors load; pe_norm and layer scale start as identity and
    the adapter's modules keep their initialisation, as in the original."""
    from timm.models.vision_transformer import VisionTransformer
    vit = VisionTransformer(img_size=64, patch_size=16, embed_dim=48, depth=4, num_heads=3, num_classes=10)
    torch.save({'model': vit.state_dict()}, tmp_path / 'deit.pth')
    torch.manual_seed(1)
    fresh = tiny_adapter(layer_scale=True).state_dict()
    torch.manual_seed(1)
    loaded = _pretrained(tmp_path / 'deit.pth', layer_scale=True).state_dict()
    for key, value in vit.state_dict().items():
        if not key.startswith(('head.', 'norm.', 'cls_token')):
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)
    for key in loaded:
        if key.startswith(LaPEViTAdapter.extra_prefixes):
            torch.testing.assert_close(loaded[key], fresh[key], rtol=0, atol=0, msg=key)
    assert (loaded['blocks.3.ls2.gamma'] == 1).all() and (loaded['blocks.3.pe_norm.weight'] == 1).all()


def test_adapter_checkpoint_missing_a_part_is_refused(tmp_path):
    from lape_mm.checkpoint import CheckpointError
    weights = original_checkpoint()
    torch.save({k: v.float() for k, v in weights.items() if not k.startswith('up.')}, tmp_path / 'partial.pth')
    with pytest.raises(CheckpointError, match='up'):
        _pretrained(tmp_path / 'partial.pth', layer_scale=True)


# ---------------------------------------------------------------- configs
ADAPTER_CONFIGS = sorted(p.name for p in (ROOT / 'configs').glob('*vit_adapter*.py') if not p.name.endswith('_add.py'))
COCO_3X = 'mask_rcnn_lape_vit_adapter_t_fpn_3x_coco.py'


@pytest.mark.parametrize('name', ADAPTER_CONFIGS)
def test_config_builds_and_has_its_baseline_twin(name):
    """Every config's backbone and neck/head inputs; whole models for the tiny configs (the
    full-size ones differ from them in widths and data only)."""
    cfg = Config.fromfile(ROOT / 'configs' / name)
    assert_baseline_twin(cfg, Config.fromfile(ROOT / 'configs' / name.replace('.py', '_add.py')))
    backbone = LaPEViTAdapter(**{k: v for k, v in cfg.model.backbone.items() if k not in ('type', 'init_cfg')})
    if cfg.model.type == 'MaskRCNN':
        inputs = cfg.model.neck.in_channels
    else:  # UPerNet takes the four maps as they are, without the plain ViT's MultiLevelNeck
        inputs = cfg.model.decode_head.in_channels
        assert cfg.model.get('neck') is None
    assert list(inputs) == [backbone.embed_dims] * 4
    if 'tiny' in name:
        assert isinstance(build_model(cfg.model, cfg.default_scope).backbone, LaPEViTAdapter)


def test_tiny_coco_fpn_output_scale_is_fixed():
    """mmdet's FPN has no norm: at the tiny run's AdamW lr 1e-3 its outputs grew from std 2 to 130
    in 50 iterations and the heads stayed at chance. The tiny config's FPN ends each conv with LN2d,
    so its outputs keep unit scale whatever the scale of the adapter's maps."""
    cfg = Config.fromfile(ROOT / 'configs' / 'mask_rcnn_lape_vit_adapter_t_fpn_tiny-coco_160.py')
    neck = build_model(cfg.model.neck, 'mmdet')
    torch.manual_seed(0)
    maps = [50 * torch.randn(2, 192, 40 // 2 ** i, 40 // 2 ** i) for i in range(4)]
    with torch.no_grad():
        stds = [out.std().item() for out in neck(maps)]
    assert len(stds) == 5 and all(0.9 < s < 1.1 for s in stds), stds


def test_coco_3x_config_is_vit_adapter_recipe():
    cfg = Config.fromfile(ROOT / 'configs' / COCO_3X)
    bb = cfg.model.backbone
    assert (bb.window_size, bb.global_attn_indexes, bb.layer_scale) == (14, (2, 5, 8, 11), True)
    assert (bb.conv_inplane, bb.n_points, bb.deform_num_heads, bb.cffn_ratio, bb.drop_path_rate) == (64, 4, 6, .25, .1)
    assert bb.interaction_indexes == [[0, 2], [3, 5], [6, 8], [9, 11]]
    assert cfg.optim_wrapper.optimizer.lr == 1e-4 and cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert set(cfg.optim_wrapper.paramwise_cfg.custom_keys) == {'level_embed', 'pos_embed', 'norm', 'bias'}
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.param_scheduler[0].end == 500 and cfg.train_cfg.max_epochs == 36
    assert any(t.type == 'RandomChoice' for t in cfg.train_dataloader.dataset.pipeline)
    one_x = Config.fromfile(ROOT / 'configs' / COCO_3X.replace('3x', '1x'))
    assert (one_x.optim_wrapper.optimizer.lr, one_x.optim_wrapper.optimizer.weight_decay) == (2e-4, 0.01)
    assert one_x.train_cfg.max_epochs == 12


def test_cpu_launch_turns_the_adapter_sync_bn_into_bn():
    from tools.launch import replace_sync_bn
    cfg = Config.fromfile(ROOT / 'configs' / COCO_3X)
    assert cfg.model.backbone.adapter_norm_cfg.type == 'SyncBN'
    replace_sync_bn(cfg.model)
    assert cfg.model.backbone.adapter_norm_cfg.type == 'BN'


# ---------------------------------------------------------------- end to end (tools/train.py)
TINY_COCO = 'configs/mask_rcnn_lape_vit_adapter_t_fpn_tiny-coco_160.py'
TINY_ADE = 'configs/upernet_lape_vit_adapter_t_tiny-ade_128x128.py'


@pytest.mark.slow
def test_tiny_detection_trains_and_evaluates(tmp_path):
    """The tiny config (4 blocks) through tools/train.py on CPU: SyncBN becomes BN, training runs,
    the validation computes COCO box and mask AP, and tools/test.py on the final checkpoint gives them again."""
    from tools.tiny_data import make_tiny_coco
    root = make_tiny_coco(tmp_path / 'coco', num_train=8, num_val=3, seed=1)
    options = cfg_options({**ADAPTER.options(root), 'model.test_cfg.rcnn.score_thr': 0.0})
    out = run_tool('tools/train.py', TINY_COCO, '--work-dir', str(tmp_path / 'work'), *options)
    assert 'SyncBN layer configs with BN' in out
    assert 0 <= float(re.findall(r'coco/segm_mAP: ([\d.]+)', out)[-1]) <= 1
    checkpoint, results = tmp_path / 'work' / 'epoch_1.pth', tmp_path / 'results.pkl'
    test_out = run_tool('tools/test.py', TINY_COCO, str(checkpoint), '--work-dir', str(tmp_path / 'test'),
                        '--out', str(results), *options)
    metrics = logged_metrics(test_out, r'coco/\w+')
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= metrics.keys() and metrics == logged_metrics(out, r'coco/\w+')
    # AP is about 0 after one epoch: the predictions themselves are the final checkpoint's, run directly.
    import pickle
    from mmdet.apis import DetInferencer
    image = next((root / 'val2017').glob('*.jpg'))
    inferencer = DetInferencer(model=str(tmp_path / 'work' / Path(TINY_COCO).name), weights=str(checkpoint),
                               device='cpu', show_progress=False)
    prediction = inferencer(str(image))['predictions'][0]
    with open(results, 'rb') as f:
        dumped = next(d['pred_instances'] for d in pickle.load(f) if d['img_path'].endswith(image.name))
    assert dumped['labels'].tolist() == prediction['labels'] and len(prediction['labels']) > 0
    torch.testing.assert_close(dumped['bboxes'], torch.tensor(prediction['bboxes']))


@pytest.mark.slow
def test_tiny_segmentation_trains_and_evaluates(tiny_ade, tmp_path):
    """The tiny UPerNet config (4 blocks, 4 iterations) through tools/train.py, with its mIoU, which
    tools/test.py on the final checkpoint reproduces."""
    options = cfg_options(seg_options(tiny_ade, iters=4, **ADAPTER_LAYERS))
    out = run_tool('tools/train.py', TINY_ADE, '--work-dir', str(tmp_path / 'work'), *options)
    assert 0 <= float(re.findall(r'mIoU: ([\d.]+)', out)[-1]) <= 100
    checkpoint, preds = tmp_path / 'work' / 'iter_4.pth', tmp_path / 'preds'
    test_out = run_tool('tools/test.py', TINY_ADE, str(checkpoint), '--work-dir', str(tmp_path / 'test'),
                        '--out', str(preds), *options)
    metrics = logged_metrics(test_out, 'aAcc|mIoU|mAcc')
    assert metrics.keys() == {'aAcc', 'mIoU', 'mAcc'} and metrics == logged_metrics(out, 'aAcc|mIoU|mAcc')
    # The metrics are about 0 after 4 iterations: the predicted PNGs (ADE ids 1..150) are the final
    # checkpoint's, run directly.
    import numpy as np
    from mmseg.apis import inference_model, init_model
    from PIL import Image
    model = init_model(str(tmp_path / 'work' / Path(TINY_ADE).name), str(checkpoint), device='cpu')
    for image in (tiny_ade / 'images/validation').glob('*.jpg'):
        expected = inference_model(model, str(image)).pred_sem_seg.data[0].numpy() + 1
        assert np.array_equal(np.asarray(Image.open(preds / f'{image.stem}.png')), expected), image.name


@pytest.mark.parametrize('kwargs, message', [
    (dict(n_points=0), 'n_points must be an integer >= 1, got 0'),
    (dict(conv_inplane=0), 'conv_inplane must be an integer >= 1, got 0'),
    (dict(deform_num_heads=0), 'deform_num_heads must be an integer >= 1, got 0'),
])
def test_adapter_refuses_values_it_would_ignore_or_misread(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tiny_adapter(**kwargs)


def test_adapter_names_an_empty_batch():
    with pytest.raises(ValueError, match=r'empty batch \[0, 3, 64, 64\]'):
        tiny_adapter()(torch.randn(0, 3, 64, 64))
