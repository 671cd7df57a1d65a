"""The lape_vit_* timm models honour timm's model contract, as timm's own tests/test_models.py checks it
for vit_* / deit*: default cfgs and heads, forward_intermediates and features_only, fx tracing
(torchvision feature extraction), backward, strict pretrained loading."""
import math

import pytest
import timm
import torch
from timm.layers import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import lape_mm.models.classifiers  # noqa: F401  (registers the timm names)
from lape_mm.checkpoint import CheckpointError

NAME = 'lape_vit_tiny_patch16_224'
SMALL = dict(num_layers=4)  # timm's tests use the full depth; four blocks check the same contract


def create(**kwargs):
    return timm.create_model(NAME, **SMALL, **kwargs)


def test_registered_like_timm_vits():
    assert {'lape_vit_tiny_patch16_224', 'lape_vit_small_patch16_224',
            'lape_vit_base_patch16_224'} <= set(timm.list_models('lape_vit_*'))


@pytest.mark.parametrize('pe_join', ['lape', 'add'])
def test_default_cfg_heads_and_pooling(pe_join):
    """timm's test_model_default_cfgs_non_std."""
    model = create(pe_join=pe_join).eval()
    assert model.num_classes == 1000 and model.num_features == model.head_hidden_size == 192
    cfg, state = model.default_cfg, model.state_dict()
    assert f"{cfg['classifier']}.weight" in state and f"{cfg['first_conv']}.weight" in state
    img = torch.randn(1, *cfg['input_size'])
    features = model.forward_features(img)
    assert features.shape == (1, 197, model.num_features)
    pre_logits = model.forward_head(features, pre_logits=True)
    assert pre_logits.shape == (1, model.head_hidden_size)
    model.reset_classifier(0)
    assert model.num_classes == 0 and model(img).shape == pre_logits.shape
    assert create(num_classes=0).eval()(img).shape == (1, model.num_features)


def test_backward_reaches_every_parameter():
    """timm's test_model_backward (128x128 input, a 42-class head)."""
    model = create(num_classes=42).train()
    out = model(torch.randn(2, 3, 128, 128))
    out.mean().backward()
    assert out.shape == (2, 42)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_forward_intermediates():
    """timm's test_model_forward_intermediates: one map per block, final output = forward_features."""
    model = create().eval()
    channels = timm.models.FeatureInfo(model.feature_info, len(model.feature_info)).channels()
    img = torch.randn(1, 3, 96, 96)
    output, intermediates = model.forward_intermediates(img, output_fmt='NCHW')
    assert len(intermediates) == len(channels) == 4
    for c, o in zip(channels, intermediates):
        assert o.shape == (1, c, 6, 6) and torch.isfinite(o).all()
    torch.testing.assert_close(output, model.forward_features(img))
    last_two = model.forward_intermediates(img, indices=2, norm=True, output_fmt='NLC', intermediates_only=True)
    assert [t.shape for t in last_two] == [(1, 36, 192)] * 2
    torch.testing.assert_close(last_two[-1], output[:, 1:])


def test_features_only_out_indices():
    """features_only=True with ViT-style out_indices, as timm's ViT (feature_cls='getter')."""
    model = timm.create_model('lape_vit_base_patch16_224', features_only=True, out_indices=(2, 5, 8, 11),
                              embed_dims=64, num_heads=2).eval()
    assert model.feature_info.channels() == [64] * 4 and model.feature_info.reduction() == [16] * 4
    outs = model(torch.randn(1, 3, 96, 128))
    assert [o.shape for o in outs] == [(1, 64, 6, 8)] * 4
    assert len(model.model.blocks) == 12  # nothing pruned: index 11 is the last block
    pruned = create(features_only=True, out_indices=(1,)).eval()
    assert len(pruned.model.blocks) == 2 and pruned(torch.randn(1, 3, 64, 64))[0].shape == (1, 192, 4, 4)


def _fx_model(model, train: bool):
    """Traced the way timm's test does it: timm's leaf modules and autowrapped functions."""
    tracer_kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(),
                         param_shapes_constant=True)
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    return create_feature_extractor(model, train_return_nodes=[train_nodes[-1]],
                                    eval_return_nodes=[eval_nodes[-1]], tracer_kwargs=tracer_kwargs)


@pytest.mark.parametrize('pe_type', ['learnable', 'sincos_2d'])
def test_fx_forward_is_exact(pe_type):
    """timm's test_model_forward_fx: the traced model gives the same output bit for bit, and its
    input checks and PE resize still run on concrete sizes (traced at 128, run at 96x160)."""
    model = create(pe_type=pe_type).eval()
    with torch.inference_mode():
        img = torch.randn(1, 3, 128, 128)
        fx_model = _fx_model(model, train=False)
        assert torch.equal(next(iter(fx_model(img).values())), model(img))
        other = torch.randn(1, 3, 96, 160)
        assert torch.equal(next(iter(fx_model(other).values())), model(other))
        with pytest.raises(ValueError, match='not a multiple of patch_size'):
            fx_model(torch.randn(1, 3, 100, 100))


@pytest.mark.parametrize('kwargs', [dict(rope='axial', pe_type='none'), dict(rope='mixed', pe_join='lape'),
                                    dict(rope='axial', with_cls_token=False, global_pool='avg', window_size=3,
                                         global_attn_indexes=(3,))], ids=['axial', 'mixed-lape', 'axial-windows'])
def test_fx_forward_with_rope_is_exact(kwargs):
    """RoPE tables are built at each input's grid in the traced model too (traced at 128, run at 128x80)."""
    model = create(**kwargs).eval()
    with torch.inference_mode():
        fx_model = _fx_model(model, train=False)
        for img in (torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 80)):
            assert torch.equal(next(iter(fx_model(img).values())), model(img))


def test_torchscript_refuses_rope():
    """TorchScript cannot build the tables: a scripted RoPE model says so instead of running without them."""
    with timm.layers.set_scriptable(True):
        model = create(rope='axial').eval()
    with pytest.raises(torch.jit.Error, match='TorchScript cannot build RoPE tables'):
        torch.jit.script(model)(torch.randn(1, 3, 64, 64))


def test_fx_backward():
    """timm's test_model_backward_fx."""
    model = create(num_classes=42).train()
    fx_model = _fx_model(model, train=True)
    out = next(iter(fx_model(torch.randn(2, 3, 128, 128)).values()))
    out.mean().backward()
    assert out.shape == (2, 42)
    assert [n for n, p in fx_model.named_parameters() if p.grad is None] == []


def test_pretrained_file_is_strict(tmp_path):
    """A file missing a backbone tensor is an error; only the head may be absent (new num_classes)."""
    source = create()
    state = source.state_dict()
    no_head = {k: v for k, v in state.items() if not k.startswith('head.')}
    torch.save({'model': no_head}, tmp_path / 'no_head.pth')
    model = create(num_classes=7, pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / 'no_head.pth')))
    assert torch.equal(model.pos_embed, source.pos_embed) and model.head.weight.shape == (7, 192)
    del no_head['pos_embed']
    torch.save({'model': no_head}, tmp_path / 'no_pe.pth')
    with pytest.raises(CheckpointError, match=r"missing \['pos_embed'\]"):
        create(pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / 'no_pe.pth')))
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(CheckpointError):
        create(pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / 'empty.pth')))


def test_output_stays_finite_and_sized_for_timm_input_sizes():
    """timm tests models at 96, 128 and 224 whatever their default; the PE is resized each time."""
    model = create().eval()
    for size in (96, 128, 224):
        out = model(torch.randn(1, 3, size, size))
        assert out.shape == (1, 1000) and torch.isfinite(out).all()
    assert math.isclose(model.default_cfg['crop_pct'], 0.875)


@pytest.mark.parametrize('pe_join,pe_type', [('lape', 'sincos_2d'), ('add', 'learnable'), ('unshare', 'learnable')])
def test_torchscript(pe_join, pe_type):
    """timm's test_model_forward_torchscript and test_model_forward_fx_torchscript: scripted, and
    traced then scripted, the model gives the eager output (TorchScript runs without the eager
    inference caches, which it cannot compile)."""
    with timm.layers.set_scriptable(True):
        model = create(pe_join=pe_join, pe_type=pe_type).eval()
    img = torch.randn(1, 3, 128, 96)
    expected = model(img)
    assert torch.equal(torch.jit.script(model)(img), expected)
    with torch.inference_mode():
        scripted_fx = torch.jit.script(_fx_model(model, train=False))
        assert torch.equal(next(iter(scripted_fx(img).values())), expected)


def test_fx_with_padded_windows():
    """Window attention on a grid the windows do not tile traces too (the padding is an fx leaf)."""
    model = create(with_cls_token=False, global_pool='avg', window_size=3, global_attn_indexes=(3,)).eval()
    img = torch.randn(1, 3, 128, 80)  # 8x5 tokens: windows of 3 need padding
    with torch.inference_mode():
        assert torch.equal(next(iter(_fx_model(model, train=False)(img).values())), model(img))
