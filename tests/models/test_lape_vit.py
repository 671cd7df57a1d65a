"""LaPEViT: every join mode and PE type, equivalence with timm and with the LAPE.md pseudo-code."""
import copy
import re

import pytest
import timm
import torch
import torch.nn.functional as F

from lape_mm import LaPEViT
from lape_mm.errors import ConfigError
from lape_mm.models.backbones import PE_JOINS, fit_state_dict, load_fitted
from lape_mm.models.layers import (PE_TYPES, build_fixed_pos_embed, resize_pos_embed, window_partition,
                                  window_unpartition)
from timm.layers import resample_abs_pos_embed

from conftest import forward_counts, randomize_norms, tiny_vit_kwargs

JOIN_TYPE_PAIRS = [(j, t) for j in PE_JOINS for t in PE_TYPES if not (j == 'unshare' and t != 'learnable')]


# ---------------------------------------------------------------- an independent reference
def _ln(x, norm):
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)


def _attention(y, attn, hw=None, window=0):
    """Softmax attention over all tokens, or (``window`` > 0, ViTDet) over each window of the ``hw`` grid
    after zero-padding the grid to whole windows; the padded tokens are cropped again after ``proj``."""
    if window:
        B, N, C = y.shape
        (h, w), ws = hw, window
        H, W = -(-h // ws) * ws, -(-w // ws) * ws
        grid = torch.zeros(B, H, W, C, dtype=y.dtype)
        grid[:, :h, :w] = y.view(B, h, w, C)
        windows = grid.view(B, H // ws, ws, W // ws, ws, C).transpose(2, 3).reshape(-1, ws * ws, C)
        out = _attention(windows, attn).view(B, H // ws, W // ws, ws, ws, C).transpose(2, 3).reshape(B, H, W, C)
        return out[:, :h, :w].reshape(B, N, C)
    B, N, C = y.shape
    heads = attn.num_heads
    q, k, v = F.linear(y, attn.qkv.weight, attn.qkv.bias).view(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-2, -1) / (C // heads) ** 0.5).softmax(-1)
    return F.linear((weights @ v).transpose(1, 2).reshape(B, N, C), attn.proj.weight, attn.proj.bias)


def reference_forward(model: LaPEViT, img: torch.Tensor, pe_norm_input=lambda p: p) -> torch.Tensor:
    """LAPE.md's pseudo-code, written without any of LaPEViT's forward code. ``pe_norm_input`` is applied
    to the PE before each ``pe_norm`` of the progressive chain (a test's hook)."""
    p = model.patch_size
    h, w = img.shape[-2] // p, img.shape[-1] // p
    proj = model.patch_embed.proj
    x = F.conv2d(img, proj.weight, proj.bias, stride=p).flatten(2).transpose(1, 2)
    pe = model.pos_embed
    if pe is not None and (h, w) != model.patch_grid:
        pe = torch.cat([resample_abs_pos_embed(pe[i:i + 1], [h, w], list(model.patch_grid), antialias=False)
                        for i in range(len(pe))])
    if model.cls_token is not None:
        x = torch.cat([model.cls_token.expand(len(x), -1, -1), x], dim=1)
    elif pe is not None:
        pe = pe[:, 1:]
    join = model.pe_join if pe is not None else 'none'
    if join in ('add', 'add_lape'):
        x = x + pe
    p_l = pe
    for layer, blk in enumerate(model.blocks):
        if join == 'share':
            x = x + pe
        elif join == 'unshare':
            x = x + pe[layer:layer + 1]
        y = _ln(x, blk.norm1)
        if join in ('lape', 'add_lape'):
            p_l = _ln(pe_norm_input(p_l), blk.pe_norm)
            y = y + (p_l if join == 'lape' else blk.pe_gate.gamma * p_l)
        elif join == 'lape_independent':
            y = y + _ln(pe, blk.pe_norm)
        x = x + _attention(y, blk.attn, (h, w), blk.window_size)
        x = x + blk.mlp.fc2(F.gelu(blk.mlp.fc1(_ln(x, blk.norm2))))
    x = _ln(x, model.norm)
    return x[:, -h * w:].reshape(len(x), h, w, -1).permute(0, 3, 1, 2)


@pytest.mark.parametrize('pe_join,pe_type', JOIN_TYPE_PAIRS)
@pytest.mark.parametrize('size', [(64, 64), (48, 80)], ids=['train-grid', 'non-square-resized'])
def test_matches_reference(pe_join, pe_type, size):
    model = LaPEViT(**tiny_vit_kwargs(pe_join=pe_join, pe_type=pe_type)).eval()
    randomize_norms(model)
    img = torch.randn(2, 3, *size)
    (out,) = model(img)
    assert out.shape == (2, 64, size[0] // 16, size[1] // 16)
    torch.testing.assert_close(out, reference_forward(model, img), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('pe_join,pe_type', JOIN_TYPE_PAIRS)
def test_gradients_match_reference(pe_join, pe_type):
    """Training mode: every parameter's gradient is the reference's."""
    model = LaPEViT(**tiny_vit_kwargs(pe_join=pe_join, pe_type=pe_type)).train()
    randomize_norms(model)
    img = torch.randn(2, 3, 48, 80)
    model(img)[0].square().mean().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    reference_forward(model, img).square().mean().backward()
    assert grads.keys() == {name for name, p in model.named_parameters() if p.grad is not None}
    for name, p in model.named_parameters():
        if name in grads:
            torch.testing.assert_close(grads[name], p.grad, atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize('pe_join,pe_type', JOIN_TYPE_PAIRS)
def test_gradients_reach_pe_and_pe_norm(pe_join, pe_type):
    model = LaPEViT(**tiny_vit_kwargs(pe_join=pe_join, pe_type=pe_type, drop_path_rate=0.1)).train()
    randomize_norms(model)
    sum(o.square().mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
    if pe_type == 'learnable':
        assert model.pos_embed.grad is not None and model.pos_embed.grad.abs().sum() > 0
    for blk in model.blocks:
        if pe_join in ('lape', 'lape_independent', 'add_lape') and pe_type != 'none':
            assert blk.pe_norm.weight.grad.abs().sum() > 0 and blk.pe_norm.bias.grad.abs().sum() > 0
        else:
            assert blk.pe_norm is None


def test_lape_adds_two_c_parameters_per_block():
    add = sum(p.numel() for p in LaPEViT(arch='base', pe_join='add').parameters())
    lape = sum(p.numel() for p in LaPEViT(arch='base', pe_join='lape').parameters())
    assert lape - add == 12 * 2 * 768  # about 18k for ViT-B, as the paper says


@pytest.mark.parametrize('img_size', [(224, 224), (224, 320)])
def test_add_join_matches_timm(img_size):
    """pe_join='add' with a learnable PE is exactly timm's ViT (square and non-square grids).

    Resized PEs are compared with mmseg's ViT in test_checkpoint.py: timm resizes with
    antialiased bicubic (a=-0.5), mmseg and lape_mm with plain bicubic (a=-0.75, ONNX-exportable).
    """
    timm_vit = timm.create_model('vit_tiny_patch16_224', pretrained=False, num_classes=0, depth=4,
                                 img_size=img_size).eval()
    randomize_norms(timm_vit)
    model = LaPEViT(arch='tiny', num_layers=4, pe_join='add', img_size=img_size).eval()
    load_fitted(model, fit_state_dict(timm_vit.state_dict(), model)[0])
    img = torch.randn(2, 3, *img_size)
    tokens = timm_vit.forward_features(img)
    expected = tokens[:, 1:].reshape(2, img_size[0] // 16, img_size[1] // 16, -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(model(img)[0], expected, atol=1e-5, rtol=1e-5)


def test_resize_pos_embed_matches_timm_and_keeps_cls_slot():
    pe = torch.randn(1, 1 + 14 * 14, 32)
    resized = resize_pos_embed(pe, (20, 30), (14, 14))
    expected = resample_abs_pos_embed(pe, [20, 30], [14, 14], num_prefix_tokens=1, antialias=False)
    torch.testing.assert_close(resized, expected)
    assert torch.equal(resized[:, 0], pe[:, 0])
    per_block = torch.randn(3, 1 + 16, 8)  # 'unshare': each copy resized on its own
    torch.testing.assert_close(resize_pos_embed(per_block, (6, 2), (4, 4))[1:2],
                               resize_pos_embed(per_block[1:2], (6, 2), (4, 4)))


def test_out_indices_and_cls_token_outputs():
    model = LaPEViT(**tiny_vit_kwargs(out_indices=(0, 2), output_cls_token=True)).eval()
    outs = model(torch.randn(1, 3, 32, 48))
    assert len(outs) == 2
    for feature_map, cls_token in outs:
        assert feature_map.shape == (1, 64, 2, 3) and cls_token.shape == (1, 64)


def test_without_cls_token_and_final_norm():
    model = LaPEViT(**tiny_vit_kwargs(with_cls_token=False, final_norm=False, out_indices=(1, -1))).eval()
    outs = model(torch.randn(1, 3, 64, 32))
    assert [o.shape for o in outs] == [torch.Size([1, 64, 4, 2])] * 2


def test_pad_to_patch():
    model = LaPEViT(**tiny_vit_kwargs(pad_to_patch=True)).eval()
    assert model(torch.randn(1, 3, 50, 70))[0].shape == (1, 64, 4, 5)


def test_eval_forward_follows_pe_updates():
    model = LaPEViT(**tiny_vit_kwargs()).eval()
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        first = model(img)[0]
        assert torch.equal(model(img)[0], first)
        model.blocks[1].pe_norm.weight.mul_(2)  # as an optimizer step would: nothing may be stale
        changed = model(img)[0]
    assert not torch.allclose(changed, first)
    torch.testing.assert_close(changed, reference_forward(model, img), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('pe_join', PE_JOINS)
def test_blocks_take_the_pe_terms_one_at_a_time(pe_join):
    """Running the blocks in chunks, passing the PE on, gives what the terms of pos_embed_terms give."""
    pe_type = 'learnable' if pe_join == 'unshare' else 'sincos_2d'
    model = LaPEViT(**tiny_vit_kwargs(pe_join=pe_join, pe_type=pe_type)).eval()
    randomize_norms(model)
    x, hw = model.embed(torch.randn(2, 3, 48, 64))
    input_pe, block_pes = model.pos_embed_terms(hw)
    expected = x if input_pe is None else x + input_pe
    for blk, term in zip(model.blocks, block_pes):
        if pe_join in ('share', 'unshare'):
            expected, term = expected + term, None
        expected = blk(expected, term, hw)
    x, pe = model.join_input_pe(x, hw)
    for start in range(model.num_layers):
        x, pe = model.forward_blocks(x, hw, pe, start, start + 1)
    torch.testing.assert_close(x, expected, atol=0, rtol=0)


def _autocast_forward(model: LaPEViT, img: torch.Tensor, inference: bool) -> torch.Tensor:
    """bf16 autocast in eval mode: as inference (caches on) or with autograd (no caches)."""
    with torch.set_grad_enabled(not inference), torch.autocast('cpu', dtype=torch.bfloat16):
        return model(img)[0].detach()


def test_autocast_weight_cache_is_exact_and_invalidated():
    model = LaPEViT(**tiny_vit_kwargs(window_size=2, with_cls_token=False, global_attn_indexes=(1,))).eval()
    randomize_norms(model)
    img = torch.randn(2, 3, 64, 48)
    cached = _autocast_forward(model, img, inference=True)
    casts = model._weight_casts._casts
    assert len(casts) == 3 and all(t.dtype == torch.bfloat16 for block in casts for t in block.values())
    assert {'attn.qkv.weight', 'attn.proj.bias', 'mlp.fc1.weight', 'mlp.fc2.bias'} <= casts[0].keys()
    assert 'norm1.weight' not in casts[0]  # norms keep fp32, as autocast runs them
    assert torch.equal(cached, _autocast_forward(model, img, inference=False))  # bit-identical
    with torch.no_grad():
        model.blocks[2].mlp.fc2.weight.mul_(-1)  # as an optimizer step would: the casts must follow
    assert torch.equal(_autocast_forward(model, img, inference=True),
                       _autocast_forward(model, img, inference=False))
    assert model._weight_casts._casts is not casts
    model.train()
    assert not model._weight_casts._casts
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model.eval()(img)[0].sum().backward()  # with autograd the weights themselves are used
    assert not model._weight_casts._casts and model.blocks[0].attn.qkv.weight.grad is not None
    uncached = LaPEViT(**tiny_vit_kwargs(autocast_weight_cache=False)).eval()
    _autocast_forward(uncached, img, inference=True)
    assert uncached._weight_casts is None


def test_with_cp_reruns_each_block_in_backward_and_gives_same_gradients():
    kwargs = tiny_vit_kwargs()
    plain, checkpointed = LaPEViT(**kwargs), LaPEViT(with_cp=True, **kwargs)
    checkpointed.load_state_dict(plain.state_dict())
    img = torch.randn(2, 3, 64, 64)
    for model, runs in ((plain, 1), (checkpointed, 2)):  # checkpointing reruns each block's forward in backward
        with forward_counts(dict(enumerate(model.blocks))) as counts:
            model(img)[0].sum().backward()
        assert list(counts.values()) == [runs] * len(model.blocks)
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_frozen_stages():
    model = LaPEViT(**tiny_vit_kwargs(frozen_stages=2)).train()
    assert not model.pos_embed.requires_grad and not model.patch_embed.proj.weight.requires_grad
    assert not any(p.requires_grad for p in model.blocks[1].parameters())
    assert all(p.requires_grad for p in model.blocks[2].parameters())
    assert not model.blocks[0].training and model.blocks[2].training


def test_window_partition_roundtrip_with_padding():
    x = torch.randn(2, 5, 7, 8)
    windows, padded = window_partition(x, 3)
    assert windows.shape == (2 * 2 * 3, 9, 8) and padded == (6, 9)
    assert torch.equal(window_unpartition(windows, 3, padded, (5, 7)), x)


@pytest.mark.parametrize('pe_join', ['lape', 'add'])
def test_window_attention_on_non_multiple_non_square_input(pe_join):
    """ViTDet's padded windows (window_pad='input', every SimpleFPN config): a 5x7 grid that windows of 3
    do not tile, against the reference that zero-pads the normalized input, attends per window and crops.
    Random qkv biases: a padded token's key and value are then non-zero, so they count."""
    kwargs = tiny_vit_kwargs(pe_join=pe_join, with_cls_token=False, window_size=3, global_attn_indexes=(2,),
                             img_size=(80, 112))  # the PE's own grid: timm's resize (the reference's) is fp32
    model = LaPEViT(**kwargs).double().eval()
    randomize_norms(model)
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.bias.normal_(0, 0.5)
    img = torch.randn(2, 3, 80, 112, dtype=torch.float64)
    out = model(img)[0]
    assert out.shape == (2, 64, 5, 7)
    torch.testing.assert_close(out, reference_forward(model, img), atol=1e-10, rtol=1e-10)


def test_window_equal_to_grid_is_global_attention():
    windowed = LaPEViT(**tiny_vit_kwargs(with_cls_token=False, window_size=4)).eval()
    plain = LaPEViT(**tiny_vit_kwargs(with_cls_token=False)).eval()
    plain.load_state_dict(windowed.state_dict())
    img = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(windowed(img)[0], plain(img)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('kwargs,message', [
    (dict(pe_join='concat'), "unknown pe_join='concat'"),
    (dict(pe_type='rope'), "unknown pe_type='rope'"),
    (dict(arch='huge'), "unknown arch='huge'"),
    (dict(out_indices=(1, 7)), 'out_indices=[1, 7]: feature index 7 is out of range'),
    (dict(pe_join='unshare', pe_type='sincos_2d'), 'needs pe_type'),
    (dict(window_size=4), 'with_cls_token=False'),
    (dict(mlp_ratio=0), 'mlp_ratio must be a number > 0, got 0'),
    (dict(mlp_ratio=-2.), 'mlp_ratio must be a number > 0, got -2.0'),
    (dict(embed_dims=192, num_heads=5), 'num_heads=5 does not divide embed_dims=192; choose a divisor of 192, '
                                        'e.g. 2, 3, 4, 6'),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        LaPEViT(**tiny_vit_kwargs(**kwargs))


@pytest.mark.parametrize('shape,message', [
    ((1, 1, 64, 64), r'expected images \[B, 3, H, W\]'),
    ((1, 3, 50, 64), 'input size 50x64 is not a multiple of patch_size=16'),
])
def test_bad_input_is_named(shape, message):
    with pytest.raises(ConfigError, match=message):  # a user error: the tools print it as one line
        LaPEViT(**tiny_vit_kwargs(pad_to_patch=False))(torch.randn(*shape))


@pytest.mark.parametrize('pe_join', ['lape', 'add'])
def test_residual_stream_stays_fp32_under_autocast(pe_join):
    """The blocks add in place where they can, but never into a bf16 branch output: the residual
    stream (and so every block's output) stays fp32 under bf16 autocast, as in timm."""
    model = LaPEViT(**tiny_vit_kwargs(pe_join=pe_join, final_norm=False)).eval()
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        (reference,) = model(img)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            (out,) = model(img)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, atol=0.05 * reference.abs().max().item(), rtol=0)


# ---------------------------------------------------------------- dtype and device moves
def _forward(model: LaPEViT, dtype: torch.dtype) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.randn(1, 3, 48, 80, generator=torch.Generator().manual_seed(1)).to(dtype))[0]


@pytest.mark.parametrize('pe_join,pe_type', JOIN_TYPE_PAIRS)
def test_dtype_moves(pe_join, pe_type):
    """Every join x type survives .double(), .half(), .bfloat16(): the fixed PE moves with the model, and the
    low-precision error is small next to what the PE contributes (the fp32 output minus the output with the
    PE zeroed), so a PE lost or garbled in some dtype shows. The PE and attention weights are made large
    enough (PE std 0.5, qkv/proj std 0.1) for the PE to matter as much as the tokens; measured, bf16 errs by
    at most 1.3% of that contribution and fp16 by 0.15%."""
    model = LaPEViT(**tiny_vit_kwargs(pe_join=pe_join, pe_type=pe_type)).eval()
    randomize_norms(model)
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight.normal_(0, 0.1)
            blk.attn.proj.weight.normal_(0, 0.1)
        if isinstance(model.pos_embed, torch.nn.Parameter):
            model.pos_embed.normal_(0, 0.5)
    reference = _forward(model, torch.float32)
    scale = reference.norm()  # without a PE: the output itself
    if model.pos_embed is not None:
        without_pe = copy.deepcopy(model)
        with torch.no_grad():
            without_pe.pos_embed.zero_()
        scale = (reference - _forward(without_pe, torch.float32)).norm()
        assert scale > 0.5 * reference.norm()
    for dtype, rel in ((torch.float64, 1e-5), (torch.bfloat16, 0.05), (torch.float16, 0.01)):
        out = _forward(model.to(dtype), dtype)
        assert out.dtype == dtype and torch.isfinite(out).all(), dtype
        error = (out.float() - reference).norm()
        assert error < rel * scale, f'{dtype}: error {error:.3g} vs the PE contribution {scale:.3g}'
    assert model.pos_embed is None or model.pos_embed.dtype == torch.float16


@pytest.mark.parametrize('pe_join,pe_type', JOIN_TYPE_PAIRS)
def test_meta_then_to_empty_and_init(pe_join, pe_type):
    """Built on the meta device, materialised with to_empty, then init_weights: a working model
    whose fixed PE is the table again."""
    model = LaPEViT(**tiny_vit_kwargs(pe_join=pe_join, pe_type=pe_type)).to('meta')
    assert model.blocks[0].attn.qkv.weight.is_meta
    model.to_empty(device='cpu')
    model.init_weights()
    if pe_type.startswith('sincos'):
        torch.testing.assert_close(model.pos_embed, build_fixed_pos_embed(pe_type, (4, 4), 64))
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any()
    out = _forward(model.eval(), torch.float32)
    assert torch.isfinite(out).all() and out.std() > 0


def test_fixed_pos_embed_is_a_persistent_buffer():
    model = LaPEViT(**tiny_vit_kwargs(pe_type='sincos_2d'))
    assert 'pos_embed' in dict(model.named_buffers()) and 'pos_embed' in model.state_dict()
    assert not any(name == 'pos_embed' for name, _ in model.named_parameters())


# ---------------------------------------------------------------- finite gradients from step 1
@pytest.mark.parametrize('pe_join,pe_type', JOIN_TYPE_PAIRS)
def test_vit_tiny_gradients_are_finite_at_init(pe_join, pe_type):
    """A freshly initialised 12-block ViT-T trains with finite gradients for every join x type.
    (A fixed table's zero cls slot through the progressive pe_norm chain used to give inf.)"""
    model = LaPEViT(arch='tiny', img_size=64, pe_join=pe_join, pe_type=pe_type).train()
    model(torch.randn(2, 3, 64, 64))[0].square().mean().backward()
    grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()
                                                      if p.grad is not None]))
    assert torch.isfinite(grad_norm) and grad_norm < 100, grad_norm


def test_cls_slot_forward_is_the_pe_norm_bias():
    """The gradient fix leaves the forward alone: the zero cls slot comes out as each block's bias."""
    model = LaPEViT(**tiny_vit_kwargs(pe_type='sincos_2d'))
    randomize_norms(model)
    _, block_pes = model.pos_embed_terms((4, 4))
    torch.testing.assert_close(block_pes[0][0, 0], model.blocks[0].pe_norm.bias)


def test_constant_slot_guard_keeps_every_other_gradient_exact():
    """The gradient guard triggers (a learnable PE whose cls slot is zero, and pe_norm biases constant over
    channels, so the slot stays constant through the whole chain), yet only the constant slot's backward
    changes: float64, 3 blocks, where the unguarded gradient is still finite (about 1e3 per block).

    Reference: plain autograd for everything but the pe_norm parameters, whose reference treats the cls
    slot's input to every pe_norm as a constant (detached)."""
    model = LaPEViT(**tiny_vit_kwargs(pe_join='lape')).double().train()
    randomize_norms(model)
    with torch.no_grad():
        model.pos_embed[:, 0] = 0.
        for blk in model.blocks:
            blk.pe_norm.bias.fill_(0.3)
    img = torch.randn(2, 3, 64, 64, dtype=torch.float64)

    def grads(forward):
        model.zero_grad()
        forward().square().mean().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    ours = grads(lambda: model(img)[0])
    plain = grads(lambda: reference_forward(model, img))
    detached_cls = grads(lambda: reference_forward(
        model, img, pe_norm_input=lambda p: torch.cat([p[:, :1].detach(), p[:, 1:]], dim=1)))
    assert plain['pos_embed'][0, 0].abs().max() > 1e3  # what the guard prevents
    assert not ours['pos_embed'][0, 0].any()
    torch.testing.assert_close(ours['pos_embed'][:, 1:], plain['pos_embed'][:, 1:], atol=1e-12, rtol=1e-9)
    for name, grad in ours.items():
        if name != 'pos_embed':
            expected = detached_cls[name] if '.pe_norm.' in name else plain[name]
            torch.testing.assert_close(grad, expected, atol=1e-12, rtol=1e-9, msg=name)


# ---------------------------------------------------------------- arguments
def test_img_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match=r'img_size=\(120, 120\) is not a multiple of patch_size=16'):
        LaPEViT(**tiny_vit_kwargs(img_size=120))


def test_without_cls_token_there_is_no_cls_parameter():
    """Detection configs: with_cls_token=False leaves no parameter without a gradient (DDP)."""
    model = LaPEViT(**tiny_vit_kwargs(with_cls_token=False)).train()
    assert model.cls_token is None and 'cls_token' not in model.state_dict()
    model(torch.randn(1, 3, 64, 64))[0].sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_mmseg_pretrained_argument_becomes_init_cfg():
    """mmseg's ``model.pretrained=PATH`` (passed to the backbone) works as init_cfg does."""
    with pytest.warns(DeprecationWarning):
        model = LaPEViT(**tiny_vit_kwargs(pretrained='x.pth'))
    assert model.init_cfg == dict(type='Pretrained', checkpoint='x.pth')
    with pytest.raises(ValueError, match='not both'):
        LaPEViT(**tiny_vit_kwargs(pretrained='x.pth', init_cfg=dict(type='Pretrained', checkpoint='y.pth')))


# ---------------------------------------------------------------- 'add_lape': a plain ViT's function at step 0
def _plain_vit_in_add_lape(img_size=(224, 224)) -> tuple[torch.nn.Module, LaPEViT]:
    """A random 3-block timm ViT and a pe_join='add_lape' LaPEViT that loaded it (pe_norm and gates were
    set off their start first, so the fit must put them back)."""
    vit = timm.create_model('vit_tiny_patch16_224', pretrained=False, num_classes=0, depth=3, embed_dim=64,
                            num_heads=4, img_size=img_size).eval()
    randomize_norms(vit)
    with torch.no_grad():
        vit.pos_embed.normal_(0, 0.5)
    model = LaPEViT(arch='tiny', embed_dims=64, num_layers=3, num_heads=4, img_size=img_size, pe_join='add_lape')
    randomize_norms(model)
    state_dict, report = fit_state_dict(vit.state_dict(), model)
    assert len(report.closed) == len(report.identity) == 3  # and both are logged
    load_fitted(model, state_dict)
    return vit, model


@pytest.mark.parametrize('img_size', [(224, 224), (224, 320)])
def test_add_lape_from_a_plain_vit_is_that_vit(img_size):
    """Loaded from a plain ViT checkpoint, 'add_lape' computes the checkpoint's function (float64)."""
    vit, model = _plain_vit_in_add_lape(img_size)
    vit, model = vit.double(), model.double().eval()
    img = torch.randn(2, 3, *img_size, dtype=torch.float64)
    tokens = vit.forward_features(img)
    expected = tokens[:, 1:].reshape(2, img_size[0] // 16, img_size[1] // 16, -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(model(img)[0], expected, rtol=0, atol=0)


def test_add_lape_fresh_model_starts_as_add():
    """Built fresh, the gates are closed too: 'add_lape' computes what 'add' computes with the same weights."""
    model = LaPEViT(**tiny_vit_kwargs(pe_join='add_lape')).eval()
    add = LaPEViT(**tiny_vit_kwargs(pe_join='add')).eval()
    add.load_state_dict({k: v for k, v in model.state_dict().items() if '.pe_' not in k})
    img = torch.randn(2, 3, 48, 80)
    torch.testing.assert_close(model(img)[0], add(img)[0], rtol=0, atol=0)


def test_add_lape_gates_learn_from_the_first_step():
    """From a plain ViT: every gate gets a non-zero gradient at step 0 and moves in step 1; the pe_norm
    layers get theirs once the gates are open (step 2). Adam, no weight decay: only gradients move them."""
    _, model = _plain_vit_in_add_lape()
    model.train()
    gates = [blk.pe_gate.gamma for blk in model.blocks]
    norms = [p.detach().clone() for blk in model.blocks for p in blk.pe_norm.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(3):
        optimizer.zero_grad()
        model(torch.randn(2, 3, 64, 96))[0].square().mean().backward()
        if step == 0:
            assert all(g.grad.abs().min() > 0 for g in gates), [g.grad.abs().min() for g in gates]
            assert all(p.grad.abs().max() == 0 for blk in model.blocks for p in blk.pe_norm.parameters())
        optimizer.step()
        if step == 0:
            assert all(g.abs().min() > 0 for g in gates)
    moved = [p.detach() for blk in model.blocks for p in blk.pe_norm.parameters()]
    assert all((a - b).abs().min() > 0 for a, b in zip(moved, norms))
