"""Semantic segmentation: configs build, and tools/train.py + tools/test.py work end to end."""
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from lape_mm.checkpoint import safe_load
from lape_mm.datasets import DatasetError, check_seg_dataset
from tools.tiny_data import make_tiny_ade

from conftest import ROOT, assert_baseline_twin, build_model, free_port, logged_metrics, run_main, run_process, run_tool
from tiny_runs import TINY_SEG as TINY, derived_config, small_run_options

SEG_CONFIGS = sorted(p.name for p in (ROOT / 'configs').glob('*.py')
                     if p.name.startswith(('upernet', 'segmenter')) and 'adapter' not in p.name)  # test_vit_adapter
SEG_METRICS = 'aAcc|mIoU|mAcc'


@pytest.mark.parametrize('name', SEG_CONFIGS)
def test_config_builds_with_lape_backbone(name):
    cfg = Config.fromfile(ROOT / 'configs' / name)
    model = build_model(cfg.model, 'mmseg')
    assert type(model.backbone).__name__ == 'LaPEViT'
    twin = ROOT / 'configs' / name.replace('.py', '_add.py')
    if twin.exists():  # the baseline differs in pe_join and nothing else
        assert_baseline_twin(cfg, Config.fromfile(twin))


def test_encoder_decoder_forward_from_config_dict():
    cfg = Config.fromfile(ROOT / TINY)
    cfg.model.backbone.num_layers = 4
    cfg.model.backbone.out_indices = (0, 1, 2, 3)
    model = build_model(cfg.model, 'mmseg').eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 96, 160), mode='tensor')
    assert logits.shape == (1, 150, 24, 40)


def test_dataset_checks_name_the_problem(tmp_path):
    root = make_tiny_ade(tmp_path, num_train=3, num_val=1)
    dataset = dict(data_root=str(root), reduce_zero_label=True,
                   data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
    check_seg_dataset(dataset, num_classes=150)
    with pytest.raises(DatasetError, match='above the 3 classes'):
        check_seg_dataset(dataset, num_classes=3)
    next((root / 'annotations/training').glob('*.png')).unlink()
    with pytest.raises(DatasetError, match='3 images .* but 2 annotations'):
        check_seg_dataset(dataset, num_classes=150)
    with pytest.raises(DatasetError, match='does not exist'):
        check_seg_dataset({**dataset, 'data_root': str(tmp_path / 'nowhere')}, num_classes=150)


def _miou(output: str) -> float:
    return float(re.findall(r'mIoU: ([\d.]+)', output)[-1])


@pytest.mark.slow
def test_train_then_test_end_to_end(tiny_ade, tmp_path):
    work = tmp_path / 'work'
    train_out = run_tool('tools/train.py', TINY, '--work-dir', str(work), *small_run_options(tiny_ade))
    assert 'mIoU' in train_out and (work / 'iter_4.pth').exists()
    ckpt = safe_load(work / 'iter_4.pth')  # weights_only with the allowlist, as tools/test.py does
    assert 'backbone.blocks.0.pe_norm.weight' in ckpt['state_dict'] and 'rng_states' in ckpt
    preds, shows = tmp_path / 'preds', tmp_path / 'shows'
    out = run_tool('tools/test.py', TINY, str(work / 'iter_4.pth'), '--work-dir', str(tmp_path / 'test'),
                   '--out', str(preds), '--show-dir', str(shows), *small_run_options(tiny_ade))
    metrics = logged_metrics(out, SEG_METRICS)
    assert metrics.keys() == {'aAcc', 'mIoU', 'mAcc'}
    assert metrics == logged_metrics(train_out, SEG_METRICS)  # the final checkpoint: training's last validation
    assert len(list(preds.glob('*.png'))) == 6
    assert len(list(shows.rglob('*.png'))) == 6
    # Each predicted PNG is the final checkpoint's prediction, run directly: after 4 iterations the metrics are
    # about 0, so their equality above alone could not tell the weights apart. (PNGs hold ADE ids, 1..150.)
    from mmseg.apis import inference_model, init_model
    from PIL import Image
    model = init_model(str(work / Path(TINY).name), str(work / 'iter_4.pth'), device='cpu')
    for image in (tiny_ade / 'images/validation').glob('*.jpg'):
        expected = inference_model(model, str(image)).pred_sem_seg.data[0].numpy() + 1
        assert np.array_equal(np.asarray(Image.open(preds / f'{image.stem}.png')), expected), image.name


@pytest.mark.slow
def test_amp_bf16_training_on_cpu(tiny_ade, tmp_path):
    out = run_tool('tools/train.py', TINY, '--amp', '--work-dir', str(tmp_path), *small_run_options(tiny_ade, iters=2))
    assert "type='AutocastOptimWrapper'" in out
    losses = [float(v) for v in re.findall(r' loss: (\S+)', out)]
    assert len(losses) == 2 and all(0 < v < 100 for v in losses), losses  # finite: no NaN/inf


@pytest.mark.slow
@pytest.mark.parametrize('variant', ['rope', 'rope_mixed'])
def test_rope_configs_train(tiny_ade, tmp_path, variant):
    """The README's RoPE configs (RoPE + lape-joined PE; RoPE-Mixed alone) train; the mixed frequencies learn."""
    config = TINY.replace('.py', f'_{variant}.py')
    run_tool('tools/train.py', config, '--work-dir', str(tmp_path), *small_run_options(tiny_ade, iters=2))
    weights = _final_weights(tmp_path, 2)
    assert weights['backbone.blocks.0.attn.qkv.weight'].isfinite().all()
    assert ('backbone.rope.freqs' in weights) == (variant == 'rope_mixed')


@pytest.mark.slow
def test_add_lape_config_starts_from_a_plain_vit(tiny_ade, tmp_path):
    """The README's function-keeping start: a plain timm ViT-T file through --pretrained; the log says the
    gates start closed, and two iterations open them."""
    import timm
    path = tmp_path / 'vit_tiny.pth'
    torch.save(timm.create_model('vit_tiny_patch16_224', pretrained=False, depth=4).state_dict(), path)
    out = run_tool('tools/train.py', TINY.replace('.py', '_add_lape.py'), '--pretrained', str(path),
                   '--work-dir', str(tmp_path / 'work'), *small_run_options(tiny_ade, iters=2))
    assert "4 pe_gate gates not in the checkpoint start at 0: the model starts as the checkpoint's function" in out
    gates = [v for k, v in _final_weights(tmp_path / 'work', 2).items() if k.endswith('pe_gate.gamma')]
    assert len(gates) == 4 and all(g.abs().min() > 0 for g in gates)


def _final_weights(work: Path, iteration: int) -> dict:
    return safe_load(work / f'iter_{iteration}.pth')['state_dict']


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tiny_ade, tmp_path):
    """SIGKILL after iteration 3 (checkpoint at 2), --resume, and end where an unbroken run ends."""
    options = small_run_options(tiny_ade, iters=4, ckpt_interval=2, **{'randomness.deterministic': True})
    unbroken, broken = tmp_path / 'unbroken', tmp_path / 'broken'
    run_tool('tools/train.py', TINY, '--work-dir', str(unbroken), *options)
    killing = derived_config(tmp_path, "custom_imports = dict(imports=['lape_mm', 'kill_hook'])\n"
                                       "custom_hooks = [dict(type='KillAtIterHook', iteration=3)]\n")
    proc = run_process([sys.executable, 'tools/train.py', killing, '--work-dir', str(broken), *options],
                       env={'PYTHONPATH': str(ROOT / 'tests' / 'helpers')})
    assert proc.returncode == -9, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (broken / 'iter_2.pth').exists() and not (broken / 'iter_4.pth').exists()
    out = run_tool('tools/train.py', TINY, '--work-dir', str(broken), '--resume', *options)
    assert 'resumed' in out.lower()
    expected, resumed = _final_weights(unbroken, 4), _final_weights(broken, 4)
    assert expected.keys() == resumed.keys()
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], atol=0, rtol=0, msg=key)


@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process(tiny_ade, tmp_path):
    """dist_train.sh with 2 CPU processes x 1 image = 1 process x 2 images (no BN, no random aug)."""
    deterministic = {'model.decode_head.norm_cfg': None, 'model.auxiliary_head.norm_cfg': None,
                     'model.decode_head.dropout_ratio': 0.0, 'model.auxiliary_head.dropout_ratio': 0.0}
    config = derived_config(tmp_path, "train_dataloader = dict(dataset=dict(pipeline=[\n"
                                      "    dict(type='LoadImageFromFile'),\n"
                                      "    dict(type='LoadAnnotations', reduce_zero_label=True),\n"
                                      "    dict(type='Resize', scale=(128, 128), keep_ratio=False),\n"
                                      "    dict(type='PackSegInputs')]))\n")
    single, double = tmp_path / 'single', tmp_path / 'double'
    out1 = run_tool('tools/train.py', config, '--work-dir', str(single),
                    *small_run_options(tiny_ade, iters=3, ckpt_interval=3, **deterministic))
    options = small_run_options(tiny_ade, iters=3, ckpt_interval=3, **deterministic, **{'train_dataloader.batch_size': 1})
    out2 = run_tool('tools/dist_train.sh', config, '2', '--work-dir', str(double), *options,
                    env={'PYTHON': sys.executable, 'PORT': str(free_port()), 'CUDA_VISIBLE_DEVICES': ''})  # gloo on CPU
    assert 'gloo' in out2
    torch.testing.assert_close(_miou(out2), _miou(out1), atol=0.05, rtol=0)
    a, b = _final_weights(single, 3), _final_weights(double, 3)
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=2e-4, rtol=1e-3, msg=key)


def test_inferencer_writes_colour_mask(tiny_ade, tmp_path):
    """mmseg's MMSegInferencer runs our config + a checkpoint; the mask PNG holds palette + ids."""
    from mmseg.datasets import ADE20KDataset
    from PIL import Image
    from lape_mm.apis import segment_image
    cfg = Config.fromfile(ROOT / TINY)
    cfg.model.backbone.num_layers = 4
    cfg.model.backbone.out_indices = (0, 1, 2, 3)
    config = tmp_path / 'config.py'
    cfg.dump(config)
    checkpoint = tmp_path / 'segmentor.pth'
    torch.save({'state_dict': build_model(cfg.model, 'mmseg').state_dict(),
                'meta': {'dataset_meta': dict(ADE20KDataset.METAINFO)}}, checkpoint)
    image = next((tiny_ade / 'images/validation').glob('*.jpg'))
    label = segment_image(str(config), str(checkpoint), str(image), tmp_path / 'mask.png', device='cpu')
    mask = Image.open(tmp_path / 'mask.png')
    assert mask.mode == 'P' and mask.size == Image.open(image).size
    assert (np.asarray(mask) == label).all()
    assert mask.getpalette()[:3] == list(ADE20KDataset.METAINFO['palette'][0])


def test_infer_tool_segments_as_the_model_does(tiny_ade, tmp_path):
    """tools/infer.py with a segmentation config: the mask PNG holds the class ids that mmseg's own
    ``inference_model`` gives for the same config and checkpoint. The classifier is made strong, so the
    mask varies over the image and a checkpoint that was not loaded would show."""
    from mmseg.apis import inference_model, init_model
    from mmseg.datasets import ADE20KDataset
    from PIL import Image
    cfg = Config.fromfile(ROOT / TINY)
    cfg.model.backbone.update(num_layers=4, out_indices=(0, 1, 2, 3))
    model = build_model(cfg.model, 'mmseg')
    with torch.no_grad():
        model.decode_head.conv_seg.weight.normal_(0, 1)
    config, checkpoint, out = tmp_path / 'config.py', tmp_path / 'segmentor.pth', tmp_path / 'mask.png'
    cfg.dump(config)
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': dict(ADE20KDataset.METAINFO)}}, checkpoint)
    image = next((tiny_ade / 'images/validation').glob('*.jpg'))
    printed = run_main('tools/infer.py', str(config), str(checkpoint), str(image), '--out', str(out), '--device', 'cpu')
    assert f'wrote {out}' in printed
    expected = inference_model(init_model(str(config), str(checkpoint), device='cpu'), str(image))
    expected = expected.pred_sem_seg.data[0].numpy()
    assert len(np.unique(expected)) > 1
    assert np.array_equal(np.asarray(Image.open(out)), expected)
