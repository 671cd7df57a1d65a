"""lape_mm.models.backbones.checkpoint_fit: checkpoints load strictly into a backbone (what is missing,
extra or of another shape is named), and the PE is resized from the grid the checkpoint was trained on."""
import pytest
import torch

from lape_mm import LaPEViT
from lape_mm.checkpoint import CheckpointError
from lape_mm.models.backbones import load_pretrained

from conftest import run_main, tiny_vit_kwargs


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
    with pytest.raises(CheckpointError, match=r'(?s)shapes that differ.*cls_token: checkpoint \(1, 1, 32\) vs model \(1, 1, 64\)'):
        load_pretrained(LaPEViT(**tiny_vit_kwargs()), str(path))


# ---------------------------------------------------------------- strict loading
def _save(tmp_path, state_dict, name='ckpt.pth', **extra):
    path = tmp_path / name
    torch.save({'state_dict': state_dict, **extra}, path)
    return str(path)


def test_missing_backbone_tensor_is_an_error_naming_it(tmp_path):
    state = LaPEViT(**tiny_vit_kwargs()).state_dict()
    del state['pos_embed']
    with pytest.raises(CheckpointError, match=r"(?s)1 model keys missing from the checkpoint \(pos_embed: 1\): pos_embed\n.*strict=False"):
        load_pretrained(LaPEViT(**tiny_vit_kwargs()), _save(tmp_path, state))


def test_tensor_without_a_place_is_an_error_naming_it(tmp_path):
    state = {**LaPEViT(**tiny_vit_kwargs()).state_dict(), 'blocks.0.attn.rel_pos_h': torch.zeros(3)}
    with pytest.raises(CheckpointError, match=r"1 checkpoint keys the model does not have \(blocks: 1\): blocks.0.attn.rel_pos_h\n"):
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
    source = _checkpoint_pe((4, 4))
    src = _save(tmp_path, source, 'src.pth')
    dst = str(tmp_path / 'dst.pth')
    run_main('tools/convert_checkpoint.py', src, dst, '--img-size', '64', '256')
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
