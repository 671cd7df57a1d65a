"""Checkpoint formats: each converter against a checkpoint the test makes, plus safe loading."""
import os
import pickle

import pytest
import timm
import torch

from lape_mm import LaPEViT
from lape_mm.checkpoint import CheckpointError, detect_format, safe_load
from lape_mm.models.backbones import load_pretrained

from conftest import randomize_norms, tiny_vit_kwargs


def _timm_vit(depth=3, **kwargs):
    model = timm.create_model('vit_tiny_patch16_224', pretrained=False, depth=depth, **kwargs).eval()
    randomize_norms(model)
    return model


def _native_of(model: LaPEViT) -> dict:
    return {k: v for k, v in model.state_dict().items()}


def test_deit_checkpoint_loads_with_identity_pe_norm(tmp_path):
    """A plain DeiT file ({'model': ...}, with head) in a LaPE model: pe_norm starts as identity."""
    vit = _timm_vit(num_classes=10)
    path = tmp_path / 'deit.pth'
    torch.save({'model': vit.state_dict(), 'epoch': 300}, path)
    model = LaPEViT(arch='tiny', num_layers=3, pe_join='lape')
    with torch.no_grad():
        for blk in model.blocks:
            blk.pe_norm.weight.fill_(3.)
    assert load_pretrained(model, str(path)) == 'timm'
    for blk in model.blocks:
        assert torch.equal(blk.pe_norm.weight, torch.ones(192)) and torch.equal(blk.pe_norm.bias, torch.zeros(192))
    assert torch.equal(model.blocks[2].attn.qkv.weight, vit.blocks[2].attn.qkv.weight)
    assert torch.equal(model.pos_embed, vit.pos_embed)


def test_distilled_deit_drops_dist_token_slot(tmp_path):
    vit = timm.create_model('deit_tiny_distilled_patch16_224', pretrained=False, depth=2)
    path = tmp_path / 'deit_distilled.pth'
    torch.save({'model': vit.state_dict()}, path)
    model = LaPEViT(arch='tiny', num_layers=2, pe_join='add')
    load_pretrained(model, str(path))
    expected = torch.cat([vit.pos_embed[:, :1], vit.pos_embed[:, 2:]], dim=1)
    assert torch.equal(model.pos_embed, expected)


def test_lape_authors_checkpoint_roundtrip_and_pe_resize(tmp_path):
    """The authors' layout (model key, pe_norm) into a model at another grid: PE is resized."""
    source = LaPEViT(**tiny_vit_kwargs())
    randomize_norms(source)
    path = tmp_path / 'lape_deit.pth'
    torch.save({'model': {**source.state_dict(), 'head.weight': torch.zeros(5, 64)}}, path)
    target = LaPEViT(**tiny_vit_kwargs(img_size=96))
    load_pretrained(target, str(path))
    assert target.pos_embed.shape == (1, 1 + 36, 64)
    assert torch.equal(target.blocks[1].pe_norm.bias, source.blocks[1].pe_norm.bias)
    # At the same grid the resized model computes what the source computes at that size.
    img = torch.randn(1, 3, 96, 96)
    torch.testing.assert_close(target.eval()(img)[0], source.eval()(img)[0], atol=1e-5, rtol=1e-5)


def test_mmseg_vit_checkpoint_matches_mmseg_forward(tmp_path):
    """mmseg's VisionTransformer weights give the same feature map as mmseg's own forward."""
    from mmseg.models.backbones import VisionTransformer
    norm_cfg = dict(type='LN', eps=1e-6)
    mmseg_vit = VisionTransformer(img_size=64, patch_size=16, embed_dims=64, num_layers=3, num_heads=4,
                                  out_indices=(0, 2), final_norm=True, norm_cfg=norm_cfg)
    mmseg_vit.eval()
    randomize_norms(mmseg_vit)
    with torch.no_grad():
        mmseg_vit.pos_embed.normal_(0, 0.02)
    path = tmp_path / 'mmseg_segmentor.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in mmseg_vit.state_dict().items()},
                'meta': {'epoch': 1}}, path)
    model = LaPEViT(**tiny_vit_kwargs(pe_join='add', out_indices=(0, 2))).eval()
    assert load_pretrained(model, str(path)) == 'mmseg'
    img = torch.randn(2, 3, 64, 96)
    for ours, theirs in zip(model(img), mmseg_vit(img)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_mmpretrain_vit_keys_convert():
    """mmpretrain's key layout (qkv/proj, ffn.layers, ln1) maps onto every native key."""
    native = _native_of(LaPEViT(**tiny_vit_kwargs(pe_join='add')))
    renames = [('patch_embed.proj.', 'patch_embed.projection.'), ('.norm1.', '.ln1.'), ('.norm2.', '.ln2.'),
               ('.mlp.fc1.', '.ffn.layers.0.0.'), ('.mlp.fc2.', '.ffn.layers.1.'), ('blocks.', 'layers.')]
    mmpretrain = {}
    for key, value in native.items():
        for old, new in renames:
            key = key.replace(old, new)
        mmpretrain['backbone.' + ('ln1.' + key[5:] if key.startswith('norm.') else key)] = value
    mmpretrain['head.layers.head.weight'] = torch.zeros(10, 64)
    from lape_mm.checkpoint import to_lape_state_dict
    converted, fmt = to_lape_state_dict({'state_dict': mmpretrain})
    assert fmt == 'mmpretrain'
    assert torch.equal(converted.pop('head.weight'), mmpretrain['head.layers.head.weight'])
    assert converted.keys() == native.keys()
    assert all(torch.equal(converted[k], native[k]) for k in native)


def test_lape_mm_checkpoint_with_prefix(tmp_path):
    source = LaPEViT(**tiny_vit_kwargs())
    path = tmp_path / 'segmentor.pth'
    torch.save({'state_dict': {**{f'backbone.{k}': v for k, v in source.state_dict().items()},
                               'decode_head.conv_seg.weight': torch.zeros(3)}}, path)
    target = LaPEViT(**tiny_vit_kwargs())
    load_pretrained(target, str(path), prefix='backbone.')
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_init_cfg_pretrained_loads_through_init_weights(tmp_path):
    source = LaPEViT(**tiny_vit_kwargs())
    path = tmp_path / 'ckpt.pth'
    torch.save(source.state_dict(), path)
    target = LaPEViT(**tiny_vit_kwargs(init_cfg=dict(type='Pretrained', checkpoint=str(path))))
    target.init_weights()
    assert torch.equal(target.pos_embed, source.pos_embed)


def test_shape_mismatch_is_named(tmp_path):
    path = tmp_path / 'small.pth'
    torch.save(LaPEViT(**tiny_vit_kwargs(embed_dims=32, num_heads=2)).state_dict(), path)
    with pytest.raises(CheckpointError, match=r'(?s)shape mismatches.*cls_token: checkpoint \(1, 1, 32\) vs model \(1, 1, 64\)'):
        load_pretrained(LaPEViT(**tiny_vit_kwargs()), str(path))


def test_unknown_format_is_named():
    with pytest.raises(CheckpointError, match='unrecognised checkpoint format'):
        detect_format({'conv1.weight': torch.zeros(1)})


class _Exploit:
    def __reduce__(self):
        return (os.system, ('touch /tmp/lape_mm_pwned',))


def test_malicious_checkpoint_is_refused_and_never_executed(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': _Exploit()}, path)
    marker = '/tmp/lape_mm_pwned'
    if os.path.exists(marker):
        os.remove(marker)
    with pytest.raises(CheckpointError, match='refused to load .*not plain weights'):
        safe_load(path)
    with pytest.raises(CheckpointError):
        load_pretrained(LaPEViT(**tiny_vit_kwargs()), str(path))
    assert not os.path.exists(marker)
    # A plain pickle file (not a torch zip) is refused the same way.
    raw = tmp_path / 'evil.pkl'
    raw.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError):
        safe_load(raw)
    assert not os.path.exists(marker)


def test_timm_create_model_and_pretrained_file(tmp_path):
    import lape_mm.models.classifiers  # noqa: F401  (registers the timm names)
    model = timm.create_model('lape_vit_tiny_patch16_224', num_classes=7)
    assert model(torch.randn(2, 3, 224, 224)).shape == (2, 7)
    path = tmp_path / 'authors.pth'
    randomize_norms(model)
    torch.save({'model': model.state_dict()}, path)
    loaded = timm.create_model('lape_vit_tiny_patch16_224', num_classes=7, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(path)))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


# ---------------------------------------------------------------- strict loading
def _save(tmp_path, state_dict, name='ckpt.pth', **extra):
    path = tmp_path / name
    torch.save({'state_dict': state_dict, **extra}, path)
    return str(path)


def test_missing_backbone_tensor_is_an_error_naming_it(tmp_path):
    state = LaPEViT(**tiny_vit_kwargs()).state_dict()
    del state['pos_embed']
    with pytest.raises(CheckpointError, match=r"(?s)1 tensors the model needs are missing \['pos_embed'\].*strict=False"):
        load_pretrained(LaPEViT(**tiny_vit_kwargs()), _save(tmp_path, state))


def test_tensor_without_a_place_is_an_error_naming_it(tmp_path):
    state = {**LaPEViT(**tiny_vit_kwargs()).state_dict(), 'blocks.0.attn.rel_pos_h': torch.zeros(3)}
    with pytest.raises(CheckpointError, match=r"have no place in it \['blocks.0.attn.rel_pos_h'\]"):
        load_pretrained(LaPEViT(**tiny_vit_kwargs()), _save(tmp_path, state))


def test_lape_checkpoint_into_add_model_is_refused(tmp_path):
    """pe_norm layers trained with LaPE have no place in an 'add' model: a config mistake, named."""
    path = _save(tmp_path, LaPEViT(**tiny_vit_kwargs(pe_join='lape')).state_dict())
    with pytest.raises(CheckpointError, match='blocks.0.pe_norm.bias'):
        load_pretrained(LaPEViT(**tiny_vit_kwargs(pe_join='add')), path)


def test_strict_false_opts_out(tmp_path):
    state = LaPEViT(**tiny_vit_kwargs()).state_dict()
    del state['blocks.2.mlp.fc2.bias']
    model = LaPEViT(**tiny_vit_kwargs(init_cfg=dict(type='Pretrained', checkpoint=_save(tmp_path, state),
                                                    strict=False)))
    model.init_weights()
    assert torch.equal(model.blocks[1].mlp.fc1.weight, state['blocks.1.mlp.fc1.weight'])


def test_what_the_config_leaves_out_is_dropped_and_named(tmp_path):
    """Detection-style configs (no cls token, no final norm, no PE) still load a DeiT file with head."""
    from lape_mm.checkpoint import to_lape_state_dict
    from lape_mm.models.backbones import fit_state_dict
    vit = _timm_vit(num_classes=10)
    path = str(tmp_path / 'deit.pth')
    torch.save({'model': vit.state_dict()}, path)
    model = LaPEViT(arch='tiny', num_layers=3, with_cls_token=False, final_norm=False, pe_type='none')
    _, report = fit_state_dict(to_lape_state_dict(safe_load(path))[0], model)
    assert set(report.dropped) == {'cls_token', 'pos_embed', 'norm.weight', 'norm.bias', 'head.weight', 'head.bias'}
    load_pretrained(model, path)
    assert torch.equal(model.blocks[2].attn.qkv.weight, vit.blocks[2].attn.qkv.weight)


# ---------------------------------------------------------------- the checkpoint's PE grid
def _checkpoint_pe(grid, dim=64):
    model = LaPEViT(**tiny_vit_kwargs(img_size=(grid[0] * 16, grid[1] * 16)))
    return model.state_dict()


def test_saved_grid_from_mmengine_cfg_is_used(tmp_path):
    """An 8x32 PE into a 16x16 model: same number of slots, but resized from the saved grid."""
    state = _checkpoint_pe((8, 32))
    cfg = "model = dict(backbone=dict(type='LaPEViT', arch='tiny', img_size=(128, 512), patch_size=16))"
    path = _save(tmp_path, {f'backbone.{k}': v for k, v in state.items()}, meta={'cfg': cfg})
    model = LaPEViT(**tiny_vit_kwargs(img_size=256))
    load_pretrained(model, path)
    from lape_mm.models.layers import resize_pos_embed
    torch.testing.assert_close(model.pos_embed, resize_pos_embed(state['pos_embed'], (16, 16), (8, 32)))


def test_convert_tool_saves_the_grid(tmp_path):
    from conftest import run_tool
    source = _checkpoint_pe((4, 4))
    src = _save(tmp_path, source, 'src.pth')
    dst = str(tmp_path / 'dst.pth')
    run_tool('tools/convert_checkpoint.py', src, dst, '--img-size', '64', '256')
    assert torch.load(dst, weights_only=True)['meta']['pos_embed_grid'] == (4, 16)
    model = LaPEViT(**tiny_vit_kwargs(img_size=(128, 128)))
    load_pretrained(model, dst)  # 4x16 = 64 slots = 8x8: only the saved grid tells them apart
    from lape_mm.models.layers import resize_pos_embed
    expected = resize_pos_embed(resize_pos_embed(source['pos_embed'], (4, 16), (4, 4)),
                                (8, 8), (4, 16))
    torch.testing.assert_close(model.pos_embed, expected)


def test_uninferable_grid_is_refused(tmp_path):
    path = _save(tmp_path, _checkpoint_pe((2, 6)))  # 12 slots, no saved grid, not square
    with pytest.raises(CheckpointError, match='cannot be inferred'):
        load_pretrained(LaPEViT(**tiny_vit_kwargs(img_size=(64, 96))), path)


def test_convert_tool_names_a_bad_file(tmp_path):
    import subprocess
    import sys
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'')
    proc = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', str(bad), str(tmp_path / 'out.pth')],
                          cwd=os.path.dirname(os.path.dirname(__file__)), capture_output=True, text=True)
    assert proc.returncode == 2 and 'convert_checkpoint.py: error:' in proc.stderr and 'Traceback' not in proc.stderr


def test_init_cfg_reads_through_mmengine_checkpoint_loader(tmp_path, monkeypatch):
    """An https:// / s3:// init_cfg path goes through mmengine's CheckpointLoader: here http:// from a
    server on 127.0.0.1, weights-only (a malicious pickle is refused, never run)."""
    import functools
    import http.server
    import threading
    source = LaPEViT(**tiny_vit_kwargs())
    torch.save({'state_dict': source.state_dict()}, tmp_path / 'ckpt.pth')
    torch.save({'state_dict': {}, 'payload': _Exploit()}, tmp_path / 'evil.pth')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))  # where mmengine caches downloads
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{server.server_address[1]}'
    try:
        target = LaPEViT(**tiny_vit_kwargs(init_cfg=dict(type='Pretrained', checkpoint=f'{url}/ckpt.pth')))
        target.init_weights()
        assert torch.equal(target.pos_embed, source.pos_embed)
        with pytest.raises(CheckpointError, match='refused'):
            load_pretrained(LaPEViT(**tiny_vit_kwargs()), f'{url}/evil.pth')
        assert not os.path.exists('/tmp/lape_mm_pwned')
    finally:
        server.shutdown()
