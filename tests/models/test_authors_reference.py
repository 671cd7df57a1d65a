"""Fidelity to the LaPE authors' DeiT fork (github Ingrid725/LaPE, ``vision_transformer.py``, ``main.py``).

The reference here is written from their code's equations (no code of theirs is copied): their PE
tables, their checkpoint layouts (``pos_embed{i}`` per block for 'unshare', a 2-D '1D_sin' table,
``main.py``'s checkpoint dict with an ``argparse.Namespace``) and their ``forward_features``.
"""
import argparse
import fractions
import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

from lape_mm import LaPEViT
from lape_mm.checkpoint import CheckpointError, safe_load
from lape_mm.models.layers import build_fixed_pos_embed

from conftest import ROOT, run_main

# Their join_type and pe arguments, and ours.
JOINS = {'basic': 'add', 'LaPE': 'lape', 'share': 'share', 'unshare': 'unshare'}
PES = {'learnable': 'learnable', '1D_sin': 'sincos_1d', '2D_sin': 'sincos_2d'}
CASES = [(j, p) for j in JOINS for p in PES if j != 'unshare' or p == 'learnable']  # as their code allows
DIM, HEADS, DEPTH, GRID = 32, 2, 3, (4, 4)


def their_1d_table(num_positions: int, dim: int) -> torch.Tensor:
    """'1D_sin' as their code computes it: angles ``p / 10000 ** (2 * (i // 2) / dim)`` as Python floats,
    a float32 tensor of them, then sin on the even and cos on the odd channel slices in float32."""
    table = torch.tensor([[p / 10000 ** (2 * (i // 2) / dim) for i in range(dim)] for p in range(num_positions)],
                         dtype=torch.float32)
    table[:, 0::2] = torch.sin(table[:, 0::2])
    table[:, 1::2] = torch.cos(table[:, 1::2])
    return table


def their_2d_table(dim: int, height: int, width: int) -> torch.Tensor:
    """'2D_sin' ``[1, 1 + h*w, C]`` as their ``_positionalencoding2d`` computes it, in float32: a
    ``[C, h, w]`` map whose channels [0, C/2) hold sin/cos (interleaved) of x * div_term and
    [C/2, C) of y * div_term, div_term = exp(arange(0, C/2, 2) * -(ln 10000 / (C/2))); flattened
    row-major to tokens, with a zero cls slot first."""
    half = dim // 2
    table = torch.zeros(dim, height, width)
    div_term = torch.exp(torch.arange(0., half, 2) * -(math.log(10000.0) / half))
    x_angles = torch.arange(0., width).unsqueeze(1) * div_term  # [w, C/4]
    y_angles = torch.arange(0., height).unsqueeze(1) * div_term  # [h, C/4]
    table[0:half:2] = torch.sin(x_angles).T[:, None, :].expand(-1, height, -1)
    table[1:half:2] = torch.cos(x_angles).T[:, None, :].expand(-1, height, -1)
    table[half::2] = torch.sin(y_angles).T[:, :, None].expand(-1, -1, width)
    table[half + 1::2] = torch.cos(y_angles).T[:, :, None].expand(-1, -1, width)
    return torch.cat([torch.zeros(1, dim), table.flatten(1).T])[None]


def their_state_dict(join: str, pe: str, seed: int = 0) -> dict:
    """Random weights in their layout, every LayerNorm non-trivial."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape, std=0.1: torch.randn(*shape, generator=g) * std  # noqa: E731
    norm = lambda name: {f'{name}.weight': 1 + rand(DIM, std=0.3), f'{name}.bias': rand(DIM)}  # noqa: E731
    slots = 1 + GRID[0] * GRID[1]
    sd = {'cls_token': rand(1, 1, DIM, std=0.02), 'patch_embed.proj.weight': rand(DIM, 3, 16, 16, std=0.02),
          'patch_embed.proj.bias': rand(DIM), **norm('norm'), 'head.weight': rand(10, DIM), 'head.bias': rand(10)}
    if pe == '1D_sin':
        sd['pos_embed'] = their_1d_table(slots, DIM)  # 2-D, as their model holds it
    elif pe == '2D_sin':
        sd['pos_embed'] = their_2d_table(DIM, *GRID)
    elif join == 'unshare':
        sd.update({f'pos_embed{i}': rand(1, slots, DIM, std=0.02) for i in range(DEPTH)})
    else:
        sd['pos_embed'] = rand(1, slots, DIM, std=0.02)
    for i in range(DEPTH):
        b = f'blocks.{i}'
        sd.update({**norm(f'{b}.norm1'), **norm(f'{b}.norm2'),
                   f'{b}.attn.qkv.weight': rand(3 * DIM, DIM), f'{b}.attn.qkv.bias': rand(3 * DIM),
                   f'{b}.attn.proj.weight': rand(DIM, DIM), f'{b}.attn.proj.bias': rand(DIM),
                   f'{b}.mlp.fc1.weight': rand(4 * DIM, DIM), f'{b}.mlp.fc1.bias': rand(4 * DIM),
                   f'{b}.mlp.fc2.weight': rand(DIM, 4 * DIM), f'{b}.mlp.fc2.bias': rand(DIM)})
        if join == 'LaPE':
            sd.update(norm(f'{b}.pe_norm'))
    return sd


def their_forward_tokens(sd: dict, img: torch.Tensor, join: str) -> torch.Tensor:
    """Their ``forward_features`` before ``x[:, 0]``: all tokens after the final norm."""
    ln = lambda t, name: F.layer_norm(t, (DIM,), sd[f'{name}.weight'], sd[f'{name}.bias'], 1e-6)  # noqa: E731
    lin = lambda t, name: F.linear(t, sd[f'{name}.weight'], sd[f'{name}.bias'])  # noqa: E731
    x = F.conv2d(img, sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'], stride=16).flatten(2).transpose(1, 2)
    x = torch.cat([sd['cls_token'].expand(len(x), -1, -1), x], dim=1)
    pos_embed = sd.get('pos_embed')
    if join == 'basic':
        x = x + pos_embed
    for i in range(DEPTH):
        b = f'blocks.{i}'
        if join == 'share':
            x = x + pos_embed
        elif join == 'unshare':
            x = x + sd[f'pos_embed{i}']
        y = ln(x, f'{b}.norm1')
        if join == 'LaPE':
            pos_embed = ln(pos_embed, f'{b}.pe_norm')
            y = y + pos_embed
        B, N, C = y.shape
        q, k, v = lin(y, f'{b}.attn.qkv').reshape(B, N, 3, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (C // HEADS) ** -0.5).softmax(dim=-1)
        x = x + lin((attn @ v).transpose(1, 2).reshape(B, N, C), f'{b}.attn.proj')
        x = x + lin(F.gelu(lin(ln(x, f'{b}.norm2'), f'{b}.mlp.fc1')), f'{b}.mlp.fc2')
    return ln(x, 'norm')


def save_as_their_main_py(sd: dict, path) -> None:
    """A checkpoint exactly as their main.py writes it (timm's ModelEma, NativeScaler, scheduler)."""
    args = argparse.Namespace(model='deit_tiny_patch16_224', pe='2D_sin', join_type='LaPE', lr=5e-4, epochs=300,
                              drop_path=0.1, repeated_aug=True, finetune='', resume=None, opt_betas=None,
                              cutmix_minmax=None, input_size=224)
    torch.save({'model': sd, 'optimizer': {'state': {}, 'param_groups': [{'lr': 5e-4, 'params': [0, 1]}]},
                'lr_scheduler': {'t_initial': 300, 'last_epoch': 3}, 'epoch': 3, 'model_ema': sd,
                'scaler': {'scale': 65536.0, 'growth_factor': 2.0}, 'args': args}, path)


def convert_tool():
    """tools/convert_checkpoint.py as a module."""
    spec = importlib.util.spec_from_file_location('convert_checkpoint', ROOT / 'tools' / 'convert_checkpoint.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lape_model(join: str, pe: str, **kwargs) -> LaPEViT:
    return LaPEViT(arch='tiny', embed_dims=DIM, num_layers=DEPTH, num_heads=HEADS, img_size=GRID[0] * 16,
                   pe_join=JOINS[join], pe_type=PES[pe], **kwargs)


@pytest.mark.parametrize('grid,dim', [((14, 14), 192), ((14, 14), 384), ((14, 14), 768), ((14, 14), 1024),
                                      ((32, 32), 768), ((64, 64), 192), ((3, 5), 16)])
def test_fixed_tables_are_the_authors(grid, dim):
    """Our sincos tables are their '1D_sin' / '2D_sin' bit for bit at the real grids (224/16 at the
    ViT-T/S/B/L widths, 512/16, 1024/16), and on a non-square grid (rows not transposed)."""
    assert torch.equal(build_fixed_pos_embed('sincos_1d', grid, dim)[0], their_1d_table(1 + grid[0] * grid[1], dim))
    assert torch.equal(build_fixed_pos_embed('sincos_2d', grid, dim), their_2d_table(dim, *grid))


@pytest.mark.parametrize('join,pe', CASES)
def test_their_main_py_checkpoint_gives_their_tokens(join, pe, tmp_path):
    """Their checkpoint through init_cfg: every output token equals their forward's (fp32, 1e-4)."""
    sd = their_state_dict(join, pe)
    path = tmp_path / 'checkpoint.pth'
    save_as_their_main_py(sd, path)
    model = lape_model(join, pe, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.eval()
    img = torch.randn(2, 3, *(s * 16 for s in GRID))
    with torch.no_grad():
        ours = model.norm(model.forward_tokens(img)[0])
        theirs = their_forward_tokens(sd, img, join)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_main_py_checkpoint_is_weights_only_safe(tmp_path):
    """Their args Namespace is allowed; any other class in the same place is still refused."""
    path = tmp_path / 'checkpoint.pth'
    save_as_their_main_py(their_state_dict('LaPE', '2D_sin'), path)
    assert safe_load(path)['args'].join_type == 'LaPE'
    torch.save({'model': {}, 'args': fractions.Fraction(1, 3)}, tmp_path / 'other.pth')
    with pytest.raises(CheckpointError, match='not plain weights'):
        safe_load(tmp_path / 'other.pth')


def test_a_different_fixed_table_is_refused(tmp_path):
    """A checkpoint whose frozen PE is not the model's table (another PE type) is not silently replaced."""
    sd = their_state_dict('LaPE', '2D_sin')
    torch.save({'model': sd}, tmp_path / 'ckpt.pth')
    model = lape_model('LaPE', '1D_sin', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'ckpt.pth')))
    with pytest.raises(CheckpointError, match="not the sincos_1d table"):
        model.init_weights()


@pytest.mark.parametrize('join,pe', CASES)
def test_convert_to_authors_round_trip(join, pe, tmp_path):
    """tools/convert_checkpoint.py --to authors writes their layout: their forward on it equals ours,
    and it loads back into an identical model."""
    model = lape_model(join, pe)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    src, dst = tmp_path / 'ours.pth', tmp_path / 'theirs.pth'
    torch.save({'state_dict': model.state_dict()}, src)
    if join == 'unshare':  # once through its command line; the other cases call the tool's function
        run_main('tools/convert_checkpoint.py', str(src), str(dst), '--to', 'authors')
    else:
        convert_tool().convert(str(src), str(dst), to='authors')
    theirs = torch.load(dst, weights_only=True)['model']
    expected_pe_keys = ({f'pos_embed{i}' for i in range(DEPTH)} if join == 'unshare' else {'pos_embed'})
    assert {k for k in theirs if k.startswith('pos_embed')} == expected_pe_keys
    if pe == '1D_sin':
        assert theirs['pos_embed'].shape == (1 + GRID[0] * GRID[1], DIM)
    img = torch.randn(1, 3, *(s * 16 for s in GRID))
    with torch.no_grad():
        ours = model.eval().norm(model.forward_tokens(img)[0])
        torch.testing.assert_close(their_forward_tokens(theirs, img, join), ours, atol=1e-5, rtol=0)
    back = lape_model(join, pe, init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    back.init_weights()
    assert back.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())
