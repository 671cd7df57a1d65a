"""lape_mm.checkpoint.read and .download: checkpoints from where users have them. http(s) URLs (a cache per URL; a bad download is
named, deleted and fetched again), file:// URLs, and .safetensors files (timm's and Hugging Face's
format) everywhere a .pth loads; tools/convert_checkpoint.py writes them too."""
import contextlib
import functools
import http.server
import logging
import re
import threading
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import CheckpointLoader

from lape_mm import LaPEViT
from lape_mm.checkpoint import CheckpointError, load_weights_only, safe_load
from lape_mm.models.backbones import load_pretrained

from conftest import randomize_norms, tiny_vit_kwargs


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path):
    """``folder`` over http on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """Where downloads are cached (torch.hub's dir, as mmengine's loaders use it), empty per test."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    return tmp_path / 'torch_home'


@pytest.fixture
def mm_log() -> list[str]:
    """The messages mmengine's current logger emits during the test."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _vit_file(path: Path, seed: int) -> dict:
    """A tiny LaPEViT's weights, saved at ``path`` as a .pth; returns them."""
    torch.manual_seed(seed)
    state_dict = LaPEViT(**tiny_vit_kwargs()).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': state_dict}, path)
    return state_dict


def _assert_weights(model: torch.nn.Module, expected: dict) -> None:
    actual = model.state_dict()
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def _init_from(checkpoint: str) -> LaPEViT:
    """A tiny LaPEViT initialised through ``init_cfg``, as configs do."""
    model = LaPEViT(**tiny_vit_kwargs(init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
    model.init_weights()
    return model


# --- http(s) URLs ----------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_urls_with_the_same_file_name_load_their_own_weights(tmp_path, torch_home):
    served = tmp_path / 'served'
    first, second = _vit_file(served / 'a' / 'model.pth', seed=1), _vit_file(served / 'b' / 'model.pth', seed=2)
    with serve(served) as url:
        _assert_weights(_init_from(f'{url}/a/model.pth'), first)
        _assert_weights(_init_from(f'{url}/b/model.pth'), second)
        _assert_weights(_init_from(f'{url}/a/model.pth'), first)  # from the cache


@pytest.mark.timeout(60)
def test_a_corrupt_cached_download_is_named_deleted_and_fetched_again(tmp_path, torch_home, mm_log):
    served = tmp_path / 'served'
    weights = _vit_file(served / 'model.pth', seed=1)
    with serve(served) as url:
        load_weights_only(f'{url}/model.pth')
        [cached] = [p for p in torch_home.rglob('model.pth')]
        cached.write_bytes(cached.read_bytes()[:1000])  # e.g. a disk that filled up
        _assert_weights(_init_from(f'{url}/model.pth'), weights)
    log = '\n'.join(mm_log)
    assert re.search(rf'{re.escape(str(cached))}.*truncated.*[Dd]eleting', log), log
    assert cached.stat().st_size == (served / 'model.pth').stat().st_size


@pytest.mark.timeout(60)
def test_a_truncated_file_over_http_is_the_checkpoint_error_of_a_local_one(tmp_path, torch_home):
    served = tmp_path / 'served'
    _vit_file(served / 'model.pth', seed=1)
    (served / 'model.pth').write_bytes((served / 'model.pth').read_bytes()[:3000])
    with pytest.raises(CheckpointError, match='file is truncated') as local:
        _init_from(str(served / 'model.pth'))
    with serve(served) as url, pytest.raises(CheckpointError) as remote:
        _init_from(f'{url}/model.pth')
    assert f'{url}/model.pth' in str(remote.value)
    assert str(remote.value).split(': ', 1)[1] == str(local.value).split(': ', 1)[1]  # the same diagnosis
    assert not list(torch_home.rglob('model.pth'))  # deleted: the next try downloads it again


# --- file:// URLs ----------------------------------------------------------------------------------

def test_file_urls_load_like_paths(tmp_path):
    path = tmp_path / 'a folder' / 'model.pth'  # as_uri() percent-encodes the space
    weights = _vit_file(path, seed=1)
    _assert_weights(_init_from(path.as_uri()), weights)
    from tools.launch import missing_pretrained
    assert missing_pretrained({'init_cfg': dict(type='Pretrained', checkpoint=path.as_uri())}) == []
    gone = (tmp_path / 'gone.pth').as_uri()
    assert missing_pretrained({'init_cfg': dict(type='Pretrained', checkpoint=gone)}) == [gone]


# --- safetensors -----------------------------------------------------------------------------------

def _timm_vit() -> torch.nn.Module:
    model = timm.create_model('vit_tiny_patch16_224', pretrained=False, depth=3, img_size=64, num_classes=0).eval()
    randomize_norms(model)
    return model


def test_safetensors_written_by_timm_initialise_a_backbone(tmp_path):
    """timm's own Hugging Face export (model.safetensors) through init_cfg: the same features as timm."""
    vit = _timm_vit()
    timm.models.save_for_hf(vit, str(tmp_path / 'hf'), safe_serialization=True)
    model = LaPEViT(arch='tiny', num_layers=3, img_size=64, pe_join='add',
                    init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'hf' / 'model.safetensors')))
    model.init_weights()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = vit.forward_features(images)[:, 1:].transpose(1, 2).reshape(2, 192, 4, 4)
        torch.testing.assert_close(model.eval()(images)[-1], expected)


def test_safetensors_in_timm_pretrained_cfg_overlay_and_the_converter(tmp_path):
    import lape_mm.models.classifiers  # noqa: F401  (registers the timm names)
    model = timm.create_model('lape_vit_tiny_patch16_224', num_classes=7)
    randomize_norms(model)
    safetensors.torch.save_file(model.state_dict(), tmp_path / 'lape.safetensors')
    loaded = timm.create_model('lape_vit_tiny_patch16_224', num_classes=7, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(tmp_path / 'lape.safetensors')))
    _assert_weights(loaded, model.state_dict())

    # The converter reads it and writes it, at another grid: what safetensors reads back is the .pth's.
    from tools.convert_checkpoint import convert
    out_pth, out_st = tmp_path / 'out.pth', tmp_path / 'out.safetensors'
    for out in (out_pth, out_st):
        convert(str(tmp_path / 'lape.safetensors'), str(out), img_size=[128])
    as_pth, as_st = safe_load(out_pth)['state_dict'], safetensors.torch.load_file(out_st)
    assert as_st.keys() == as_pth.keys() and as_st['pos_embed'].shape == (1, 1 + 8 * 8, 192)
    assert all(torch.equal(as_st[k], as_pth[k]) for k in as_pth)
    target = LaPEViT(arch='tiny', num_layers=12, img_size=128)
    load_pretrained(target, str(out_st))  # the 8x8 grid comes from the file's metadata
    assert torch.equal(target.pos_embed, as_pth['pos_embed'])


def test_a_truncated_safetensors_file_is_named(tmp_path):
    path = tmp_path / 'model.safetensors'
    safetensors.torch.save_file(LaPEViT(**tiny_vit_kwargs()).state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=f'{re.escape(str(path))}: it is corrupt .*incomplete metadata'):
        _init_from(str(path))


# --- train.py --pretrained -------------------------------------------------------------------------

@pytest.mark.slow
def test_train_pretrained_option_initialises_the_backbone(tiny_ade, tmp_path):
    """The tiny config has init_cfg=None (where --cfg-options ...init_cfg.checkpoint=X cannot reach):
    --pretrained starts its backbone from a .safetensors file; with lr 0 the first checkpoint keeps it."""
    from helpers.tiny_runs import TINY_SEG as TINY, small_run_options
    from conftest import run_tool
    source = LaPEViT(arch='tiny', num_layers=4, img_size=128, out_indices=(0, 1, 2, 3))
    randomize_norms(source)
    safetensors.torch.save_file(source.state_dict(), tmp_path / 'backbone.safetensors')
    work = tmp_path / 'work'
    run_tool('tools/train.py', TINY, '--work-dir', str(work), '--pretrained', str(tmp_path / 'backbone.safetensors'),
             *small_run_options(tiny_ade, iters=1, ckpt_interval=1, **{'optim_wrapper.optimizer.lr': 0,
                                                                        'train_cfg.val_interval': 100}))
    trained = safe_load(work / 'iter_1.pth')['state_dict']
    for key, value in source.state_dict().items():
        assert torch.equal(trained[f'backbone.{key}'], value), key


# --- safetensors through tools/infer.py's and tools/test.py's loading --------------------------------

def _tiny_segmentor_files(tmp_path: Path) -> tuple[str, Path, Path]:
    """The tiny UPerNet config (4 blocks) and one random segmentor's weights as .pth and .safetensors."""
    from mmengine.config import Config
    from mmseg.datasets import ADE20KDataset
    from mmseg.registry import MODELS
    from mmengine.registry import init_default_scope
    from helpers.tiny_runs import TINY_SEG as TINY
    from conftest import ROOT
    cfg = Config.fromfile(ROOT / TINY)
    cfg.model.backbone.num_layers = 4
    cfg.model.backbone.out_indices = (0, 1, 2, 3)
    config = tmp_path / 'config.py'
    cfg.dump(config)
    init_default_scope('mmseg')
    state_dict = MODELS.build(cfg.model).state_dict()
    torch.save({'state_dict': state_dict, 'meta': {'dataset_meta': dict(ADE20KDataset.METAINFO)}}, tmp_path / 'seg.pth')
    safetensors.torch.save_file({k: v.contiguous() for k, v in state_dict.items()}, tmp_path / 'seg.safetensors')
    return str(config), tmp_path / 'seg.pth', tmp_path / 'seg.safetensors'


def test_safetensors_segment_an_image_as_the_pth_does(tiny_ade, tmp_path):
    from lape_mm.apis import segment_image
    config, pth, st = _tiny_segmentor_files(tmp_path)
    image = str(next((tiny_ade / 'images/validation').glob('*.jpg')))
    expected = segment_image(config, str(pth), image, tmp_path / 'pth.png', device='cpu')
    assert (segment_image(config, str(st), image, tmp_path / 'st.png', device='cpu') == expected).all()


@pytest.mark.slow
def test_tools_test_scores_a_safetensors_file_as_the_pth(tiny_ade, tmp_path):
    from conftest import run_tool
    from helpers.tiny_runs import small_run_options
    config, pth, st = _tiny_segmentor_files(tmp_path)
    scores = [re.findall(r'mIoU: ([\d.]+)', run_tool('tools/test.py', config, str(path), '--work-dir',
                                                      str(tmp_path / path.suffix[1:]), *small_run_options(tiny_ade)))
              for path in (pth, st)]
    assert scores[0] and scores[1] == scores[0]


@pytest.mark.timeout(60)
def test_a_file_in_torch_hub_cache_is_used_without_network_and_named(tmp_path, torch_home, mm_log):
    """An offline node prepared by putting the file where torch.hub keeps it: no server runs here."""
    weights = _vit_file(torch_home / 'hub' / 'checkpoints' / 'model.pth', seed=3)
    _assert_weights(_init_from('https://example.invalid/weights/model.pth'), weights)
    assert any("torch.hub's cache, which keeps files by name alone" in line for line in mm_log)
