"""lape_mm.models.arguments: LaPEViT refuses constructor values it would ignore or misread, naming them."""
import pytest
import torch

from lape_mm import LaPEViT
from lape_mm.errors import ConfigError

from conftest import tiny_vit_kwargs


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_layers=0), 'num_layers must be an integer >= 1, got 0'),
    (dict(embed_dims=0), 'embed_dims must be an integer >= 1, got 0'),
    (dict(img_size=(64, 64, 64)), 'img_size must be a positive int or an (H, W) pair'),
    (dict(img_size=(64,)), 'img_size must be'),
    (dict(img_size=0), 'img_size must be'),
    (dict(patch_size=0), 'patch_size must be an integer >= 1, got 0'),
    (dict(patch_size=-16), 'patch_size must be an integer >= 1, got -16'),
    (dict(window_size=-1, with_cls_token=False), 'window_size must be an integer >= 0, got -1'),
    (dict(drop_path_rate=1.0), 'drop_path_rate must be a number in [0, 1), got 1.0'),
    (dict(in_channels=0), 'in_channels must be an integer >= 1, got 0'),
    (dict(out_indices='3'), "out_indices must be a block index or a sequence of them, got '3'"),
    (dict(out_indices=(2, 2)), 'out_indices=[2, 2] must name distinct blocks in increasing order'),
    (dict(out_indices=(2, 0)), 'e.g. [0, 2]'),
    (dict(out_indices=(-1, 2)), 'out_indices=[-1, 2] must name distinct blocks'),  # -1 is block 2
])
def test_lape_vit_refuses_values_it_would_ignore_or_misread(kwargs, message):
    with pytest.raises(ConfigError) as err:
        LaPEViT(**tiny_vit_kwargs(**kwargs))
    assert message in str(err.value)


def test_out_indices_in_block_order_still_count_from_the_end():
    model = LaPEViT(**tiny_vit_kwargs(out_indices=(0, -1)))
    assert model.out_indices == (0, 2) and len(model(torch.randn(1, 3, 64, 64))) == 2
