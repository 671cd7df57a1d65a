"""RoPE in LaPEViT (``rope='axial' | 'mixed'``): naver's RoPE-ViT weights give timm's outputs, at any input
size, and RoPE keeps working with window attention and bf16 autocast."""
import pytest
import timm
import torch

import lape_mm.models.classifiers  # noqa: F401  (registers the timm names)
from lape_mm import LaPEViT
from lape_mm.checkpoint import detect_format
from lape_mm.models.classifiers.timm_lape import checkpoint_filter_fn
from lape_mm.models.layers import resize_pos_embed

from conftest import randomize_norms, tiny_vit_kwargs

SMALL = dict(depth=2, embed_dim=64, num_heads=4)  # head_dim 16: mixed RoPE needs a multiple of 4
# naver's variants (timm's vit_small_patch16_{variant}_224) as LaPEViT arguments
NAVER = {'rope': dict(rope='axial', pe_type='none'), 'rope_mixed': dict(rope='mixed', pe_type='none'),
         'rope_ape': dict(rope='axial', pe_type='learnable'),
         'rope_mixed_ape': dict(rope='mixed', pe_type='learnable')}
SIZES = [(224, 224), (96, 160), (336, 448)]  # the training size, a smaller non-square one, 1.5x / 2x


def naver_state_dict(variant: str) -> dict:
    """A random 2-block naver RoPE-ViT-S of timm's, with layer scales and norms far from their init."""
    source = timm.create_model(f'vit_small_patch16_{variant}_224', pretrained=False, num_classes=10, **SMALL)
    randomize_norms(source)
    with torch.no_grad():
        for name, param in source.named_parameters():
            if name.endswith(('gamma_1', 'gamma_2')):
                param.uniform_(0.5, 1.5)
            elif name in ('pos_embed', 'cls_token'):
                param.normal_(0, 0.5)
    return source.state_dict()


def timm_naver(variant: str, state_dict: dict, size: tuple[int, int]) -> torch.nn.Module:
    """timm's model with ``state_dict`` for ``size`` inputs; an 'ape' PE resized as lape_mm resizes it
    (plain bicubic; timm antialiases), so that both models see the same PE."""
    model = timm.create_model(f'vit_small_patch16_{variant}_224', pretrained=False, num_classes=10, img_size=size,
                              dynamic_img_size=True, **SMALL).double()
    if 'pos_embed' in state_dict:
        pe = resize_pos_embed(state_dict['pos_embed'].double(), (size[0] // 16, size[1] // 16), (14, 14),
                              num_prefix_tokens=0)
        state_dict = {**state_dict, 'pos_embed': pe}
    model.load_state_dict(state_dict)
    return model.eval()


def lape_from(state_dict: dict, **kwargs) -> torch.nn.Module:
    """lape_vit_small with 2 blocks, loaded strictly through timm's pretrained hook (checkpoint_filter_fn)."""
    model = timm.create_model('lape_vit_small_patch16_224', num_layers=2, embed_dims=64, num_heads=4, num_classes=10,
                              **kwargs)
    model.load_state_dict(checkpoint_filter_fn(state_dict, model), strict=True)
    return model.double().eval()


@pytest.mark.parametrize('variant', list(NAVER))
def test_naver_rope_vit_loads_strictly_and_matches_timm(variant):
    """float64, at the training size and at others (RoPE tables computed at each grid, as timm's)."""
    state_dict = naver_state_dict(variant)
    assert detect_format(state_dict) == 'rope_vit'
    model = lape_from(state_dict, pe_join='add', layer_scale_init=1e-5, **NAVER[variant])
    for size in SIZES:
        reference = timm_naver(variant, state_dict, size)
        img = torch.randn(2, 3, *size, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(model.forward_features(img), reference.forward_features(img),
                                       rtol=0, atol=0, msg=f'{size}')
            torch.testing.assert_close(model(img), reference(img), rtol=0, atol=0)
            ours = model.forward_intermediates(img, indices=[0, 1], intermediates_only=True)
            theirs = reference.forward_intermediates(img, indices=[0, 1], intermediates_only=True)
            for a, b in zip(ours, theirs, strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_naver_original_layout_loads_as_timms_copy():
    """naver's own files (github naver-ai/rope-vit) name the mixed frequencies ``freqs`` ``[2, depth,
    heads * head_dim / 2]`` and keep the grid as buffers: they load to the same model as timm's copy."""
    state_dict = naver_state_dict('rope_mixed_ape')
    original = {k: v for k, v in state_dict.items() if k != 'rope.freqs'}
    original.update(freqs=state_dict['rope.freqs'].flatten(2), freqs_t_x=torch.zeros(196), freqs_t_y=torch.zeros(196))
    expected, model = (lape_from(sd, pe_join='add', layer_scale_init=1e-5, **NAVER['rope_mixed_ape']).state_dict()
                       for sd in (state_dict, original))
    assert expected.keys() == model.keys() and all(torch.equal(expected[k], model[k]) for k in expected)


def test_lape_hybrid_and_rope_from_a_plain_vit():
    """RoPE beside a lape-joined PE builds and loads a plain ViT (DeiT/timm): mixed frequencies start fresh."""
    plain = timm.create_model('vit_small_patch16_224', pretrained=False, num_classes=10, **SMALL).state_dict()
    for rope in ('axial', 'mixed'):
        model = lape_from(plain, pe_join='lape', rope=rope)
        out = model(torch.randn(1, 3, 96, 160, dtype=torch.float64))
        assert out.shape == (1, 10) and torch.isfinite(out).all()


def _window_blocks_reference(model: LaPEViT, img: torch.Tensor) -> torch.Tensor:
    """Each block's attention run by timm's AttentionRope on the windows, with the rows of a table for the
    whole grid that the window's tokens hold (no windows here need padding)."""
    x, hw = model.embed(img)
    x = x + model.grid_pos_embed(hw)
    ws = model.blocks[0].window_size
    B, _, C = x.shape
    for i, blk in enumerate(model.blocks):
        table = model.block_rope(i, 0, hw)
        table = table.view(*table.shape[:-2], hw[0] // ws, ws, hw[1] // ws, ws, -1).transpose(-4, -3)
        table = table.reshape(*table.shape[:-5], -1, ws * ws, table.shape[-1])  # [(heads,) windows, ws*ws, D]
        y = blk.norm1(x).view(B, hw[0] // ws, ws, hw[1] // ws, ws, C).transpose(2, 3).reshape(B, -1, ws * ws, C)
        out = torch.stack([blk.attn(y[:, w], rope=table[..., w, :, :]) for w in range(y.shape[1])], dim=1)
        out = out.view(B, hw[0] // ws, hw[1] // ws, ws, ws, C).transpose(2, 3).reshape(B, -1, C)
        x = x + out
        x = x + blk.mlp(blk.norm2(x))
    return model.norm(x).transpose(1, 2).reshape(B, C, *hw)


@pytest.mark.parametrize('rope', ['axial', 'mixed'])
@pytest.mark.parametrize('window_pad', ['input', 'qkv'])
def test_window_attention_rotates_by_grid_position(rope, window_pad):
    """Windows get the RoPE rows of their own tokens: as RoPE is relative, a window's own table (what the
    model uses) gives what the whole grid's table does, for both window paddings."""
    model = LaPEViT(**tiny_vit_kwargs(rope=rope, pe_join='add', with_cls_token=False, window_size=2,
                                      window_pad=window_pad)).double().eval()
    randomize_norms(model)
    img = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        (out,) = model(img)
        # (the tables are float32: grid and window positions round differently)
        torch.testing.assert_close(out, _window_blocks_reference(model, img), rtol=1e-5, atol=1e-7)
        model.rope = None
        assert not torch.allclose(out, model(img)[0])  # the rotation did something


@pytest.mark.parametrize('rope', ['axial', 'mixed'])
def test_padded_windows_and_any_input_size(rope):
    """Windows padded at the grid's edge, global blocks between them, sizes the windows do not tile."""
    model = LaPEViT(**tiny_vit_kwargs(rope=rope, with_cls_token=False, window_size=3, global_attn_indexes=(1,),
                                      out_indices=(0, 2)))
    for size in ((64, 64), (80, 48), (128, 176)):
        outs = model(torch.randn(1, 3, *size))
        assert [o.shape for o in outs] == [(1, 64, size[0] // 16, size[1] // 16)] * 2
        assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('rope', ['axial', 'mixed'])
def test_bf16_autocast(rope):
    """Under bf16 autocast (tables in fp32, rotated q and k in bf16) the output stays near fp32's."""
    model = LaPEViT(**tiny_vit_kwargs(rope=rope, pe_join='lape')).eval()
    img = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        reference = model(img)[0]
        for grad in (False, True):  # inference with the weight cache, and with autograd
            with torch.set_grad_enabled(grad), torch.autocast('cpu', dtype=torch.bfloat16):
                out = model(img)[0].float()
            assert torch.isfinite(out).all() and (out - reference).norm() < 0.05 * reference.norm()


def test_mixed_frequencies_learn_and_reinitialise():
    """The mixed frequencies get gradients, and init_weights after to_empty gives naver's init again."""
    model = LaPEViT(**tiny_vit_kwargs(rope='mixed')).train()
    model(torch.randn(2, 3, 64, 64))[0].square().mean().backward()
    assert model.rope.freqs.grad.abs().sum() > 0
    model = LaPEViT(**tiny_vit_kwargs(rope='mixed')).to('meta').to_empty(device='cpu')
    model.init_weights()
    magnitudes = model.rope.freqs.square().sum(0).sqrt()  # naver: 1 / 10 ** (4 k / head_dim) for each angle
    expected = 1 / 10 ** (torch.arange(0, 16, 4) / 16)
    torch.testing.assert_close(magnitudes, expected.repeat(2).expand_as(magnitudes))
