"""lape_mm.checkpoint.safe_load: bad checkpoint files are one named error, pickles of other classes are
refused (and never run), and what the authors' DeiT ``main.py`` saves loads weights-only."""
import argparse
import os
import pickle
import re
import shlex

import numpy as np
import pytest
import torch

from lape_mm import LaPEViT
from lape_mm.checkpoint import CheckpointError, load_weights_only, safe_load
from lape_mm.models.backbones import load_pretrained

from conftest import tiny_vit_kwargs


BAD_FILES = {
    'empty': (lambda good: b'', 'empty'),
    'truncated': (lambda good: good[:len(good) // 2], 'truncated'),
    'random bytes': (lambda good: np.random.default_rng(0).bytes(4096), 'not a checkpoint'),
}


@pytest.fixture
def bad_checkpoint(tmp_path, request):
    """A checkpoint file broken in the way ``request.param`` names; returns (path, expected words)."""
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': LaPEViT(**tiny_vit_kwargs()).state_dict()}, good)
    make_bytes, words = BAD_FILES[request.param]
    path = tmp_path / f'{request.param.replace(" ", "_")}.pth'
    path.write_bytes(make_bytes(good.read_bytes()))
    return path, words


@pytest.mark.parametrize('bad_checkpoint', sorted(BAD_FILES), indirect=True)
def test_bad_checkpoint_files_raise_checkpoint_error_naming_file_and_problem(bad_checkpoint):
    path, words = bad_checkpoint
    for load in (safe_load, load_weights_only):  # a local file, and any source lape_mm and its tools read
        with pytest.raises(CheckpointError, match=f'{re.escape(str(path))}.*{words}'):
            load(str(path))
    backbone = LaPEViT(**tiny_vit_kwargs(), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        backbone.init_weights()


class _Hyperparameters:
    def __init__(self):
        self.lr = 5e-4


def _deit_main_checkpoint(args: argparse.Namespace) -> dict:
    """What the LaPE authors' DeiT ``main.py`` saves."""
    model = LaPEViT(**tiny_vit_kwargs())
    weights = model.state_dict()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    return {'model': weights, 'optimizer': optimizer.state_dict(), 'lr_scheduler': {'base_lr': 5e-4, 't_initial': 300},
            'epoch': 299, 'model_ema': weights, 'scaler': {'scale': 65536.0, 'growth_factor': 2.0}, 'args': args}


def test_deit_main_checkpoint_with_namespace_args_loads_weights_only(tmp_path):
    args = argparse.Namespace(model='lape_deit_tiny_patch16_224', batch_size=256, lr=5e-4, smoothing=0.1,
                              pin_mem=True, finetune='', resume=None, milestones=[30, 60], drop_path=0.1)
    path = tmp_path / 'checkpoint.pth'
    torch.save(_deit_main_checkpoint(args), path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        pass  # as timm's loaders do: leaving the block drops Namespace from the process-wide allowlist
    loaded = safe_load(path)
    assert isinstance(loaded['args'], argparse.Namespace) and vars(loaded['args']) == vars(args)
    assert loaded['epoch'] == 299 and torch.equal(loaded['model']['pos_embed'], loaded['model_ema']['pos_embed'])


@pytest.mark.parametrize('payload', [_Hyperparameters(), argparse.Namespace(lr=5e-4, config=_Hyperparameters())])
def test_pickles_of_other_classes_are_still_refused_without_unsafe_advice(tmp_path, payload):
    path = tmp_path / 'checkpoint.pth'
    torch.save({**_deit_main_checkpoint(argparse.Namespace()), 'args': payload}, path)
    with pytest.raises(CheckpointError, match='refused to load .*_Hyperparameters') as err:
        safe_load(path)
    assert 'weights_only' not in str(err.value) and 'add_safe_globals' not in str(err.value)


class _Exploit:
    """A pickle that would create the file ``marker`` if it were ever unpickled (one marker per
    test, so that tests running at the same time cannot see each other's)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {shlex.quote(self.marker)}',))


def test_malicious_checkpoint_is_refused_and_never_executed(tmp_path):
    path = tmp_path / 'evil.pth'
    marker = tmp_path / 'pwned'
    torch.save({'state_dict': {}, 'payload': _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match='refused to load .*not plain weights'):
        safe_load(path)
    with pytest.raises(CheckpointError):
        load_pretrained(LaPEViT(**tiny_vit_kwargs()), str(path))
    assert not marker.exists()
    # A plain pickle file (not a torch zip) is refused the same way.
    raw = tmp_path / 'evil.pkl'
    raw.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(CheckpointError):
        safe_load(raw)
    assert not marker.exists()


def test_init_cfg_reads_through_mmengine_checkpoint_loader(tmp_path, monkeypatch):
    """An https:// / s3:// init_cfg path goes through mmengine's CheckpointLoader: here http:// from a
    server on 127.0.0.1, weights-only (a malicious pickle is refused, never run)."""
    import functools
    import http.server
    import threading
    source = LaPEViT(**tiny_vit_kwargs())
    torch.save({'state_dict': source.state_dict()}, tmp_path / 'ckpt.pth')
    marker = tmp_path / 'pwned'
    torch.save({'state_dict': {}, 'payload': _Exploit(marker)}, tmp_path / 'evil.pth')
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
        assert not marker.exists()
    finally:
        server.shutdown()
