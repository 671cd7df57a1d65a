"""lape_mm.checkpoint.convert: each checkpoint format against a checkpoint the test makes, loaded into a LaPEViT."""
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


def test_distilled_deit_drops_dist_token_slot(tmp_path, monkeypatch):
    from lape_mm.checkpoint import convert
    logged = []
    monkeypatch.setattr(convert, 'print_log', lambda message, **kwargs: logged.append(message))
    vit = timm.create_model('deit_tiny_distilled_patch16_224', pretrained=False, depth=2)
    path = tmp_path / 'deit_distilled.pth'
    torch.save({'model': vit.state_dict()}, path)
    model = LaPEViT(arch='tiny', num_layers=2, pe_join='add')
    load_pretrained(model, str(path))
    assert any('dist_token' in m and 'head_dist' in m for m in logged), logged  # README: "named in the log"
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


@pytest.mark.parametrize('size', [(64, 96), (50, 70)])
def test_mmseg_vit_checkpoint_matches_mmseg_forward(tmp_path, size):
    """mmseg's VisionTransformer weights give the same feature map as mmseg's own forward, also at sizes that
    are not multiples of the patch, which both pad at the bottom and right by default."""
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
    img = torch.randn(2, 3, *size)
    for ours, theirs in zip(model(img), mmseg_vit(img)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def _mmpretrain_classifier(num_classes: int = 10):
    """mmpretrain's own ImageClassifier (VisionTransformer + VisionTransformerClsHead) at the tiny test size,
    with random weights everywhere (norms, PE, cls token and head included)."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    classifier = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='VisionTransformer', arch=dict(embed_dims=64, num_layers=3, num_heads=4,
                                                          feedforward_channels=256), img_size=64, patch_size=16),
        head=dict(type='VisionTransformerClsHead', num_classes=num_classes, in_channels=64))).eval()
    randomize_norms(classifier)
    with torch.no_grad():
        for name, param in classifier.named_parameters():
            if name.endswith(('pos_embed', 'cls_token')) or name.startswith('head.') or name.endswith('.bias'):
                param.normal_(0, 0.2)
    return classifier


def test_mmpretrain_classifier_checkpoint_matches_mmpretrain_forward(tmp_path):
    """A checkpoint of mmpretrain's real classifier: LaPEViT gives its backbone's cls-token features, and
    timm's LaPE classifier (head included) its logits."""
    import lape_mm.models.classifiers  # noqa: F401  (registers the timm names)
    classifier = _mmpretrain_classifier()
    path = tmp_path / 'mmpretrain.pth'
    torch.save({'state_dict': classifier.state_dict(), 'meta': {'epoch': 3}}, path)
    backbone = LaPEViT(**tiny_vit_kwargs(pe_join='add', output_cls_token=True)).eval()
    assert load_pretrained(backbone, str(path)) == 'mmpretrain'
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        (cls_features,) = classifier.backbone(img)
        torch.testing.assert_close(backbone(img)[0][1], cls_features, atol=1e-5, rtol=1e-5)
        timm_model = timm.create_model('lape_vit_tiny_patch16_224', pretrained=True, num_classes=10, pe_join='add',
                                       pretrained_cfg_overlay=dict(file=str(path), num_classes=10),
                                       **{k: v for k, v in tiny_vit_kwargs().items() if k != 'arch'}).eval()
        logits = classifier(img, mode='tensor')
        assert logits.std() > 0.1
        torch.testing.assert_close(timm_model(img), logits, atol=1e-5, rtol=1e-5)


def test_lape_mm_checkpoint_with_prefix(tmp_path):
    source = LaPEViT(**tiny_vit_kwargs())
    path = tmp_path / 'segmentor.pth'
    torch.save({'state_dict': {**{f'backbone.{k}': v for k, v in source.state_dict().items()},
                               'decode_head.conv_seg.weight': torch.zeros(3)}}, path)
    target = LaPEViT(**tiny_vit_kwargs())
    load_pretrained(target, str(path), prefix='backbone.')
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_ddp_saved_checkpoint_loses_its_module_prefix(tmp_path):
    """A state dict saved from a DDP-wrapped model (every key under ``module.``) loads as the bare model's."""
    source = LaPEViT(**tiny_vit_kwargs())
    path = tmp_path / 'ddp.pth'
    torch.save({'model': {f'module.{k}': v for k, v in source.state_dict().items()}}, path)
    target = LaPEViT(**tiny_vit_kwargs())
    assert load_pretrained(target, str(path)) == 'timm'
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_authors_per_block_pes_keep_block_order_past_ten_blocks():
    """Their 'unshare' model stores ``pos_embed0`` .. ``pos_embed11``: block 10's PE is the 11th, not the 3rd
    (as it would be in string order, after pos_embed1)."""
    from lape_mm.checkpoint.convert import convert_timm
    state_dict = {f'pos_embed{i}': torch.full((1, 5, 4), float(i)) for i in range(12)}
    stacked = convert_timm(state_dict)['pos_embed']
    assert stacked.shape == (12, 5, 4) and stacked[:, 0, 0].tolist() == [float(i) for i in range(12)]


def test_unknown_format_is_named():
    with pytest.raises(CheckpointError, match='unrecognised checkpoint format'):
        detect_format({'conv1.weight': torch.zeros(1)})


def test_timm_create_model_and_pretrained_file(tmp_path):
    """A 7-class model saved in the authors' layout, with a random (non-zero) head, comes back whole
    through timm's pretrained file: every tensor, the head included, and so the logits."""
    import lape_mm.models.classifiers  # noqa: F401  (registers the timm names)
    model = timm.create_model('lape_vit_tiny_patch16_224', num_classes=7, num_layers=2).eval()
    randomize_norms(model)
    with torch.no_grad():
        model.head.weight.normal_(0, 1)
        model.head.bias.normal_(0, 1)
    img = torch.randn(2, 3, 224, 224)
    logits = model(img)
    assert logits.shape == (2, 7) and logits.std() > 0.1
    path = tmp_path / 'authors.pth'
    torch.save({'model': model.state_dict()}, path)
    loaded = timm.create_model('lape_vit_tiny_patch16_224', num_classes=7, num_layers=2, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(path), num_classes=7)).eval()
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert torch.equal(loaded(img), logits)


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
