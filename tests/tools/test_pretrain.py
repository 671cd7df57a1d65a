"""ImageNet pretraining configs (mmpretrain + LaPEViT), their checkpoints downstream, and the study."""
import dataclasses
import json
import re
from pathlib import Path

import pytest
import timm
import torch
from mmengine.config import Config

from lape_mm import LaPEViT
from lape_mm.checkpoint import safe_load, to_lape_state_dict
from tools.tiny_data.imagenet import NUM_CLASSES, make_tiny_imagenet

from conftest import ROOT, build_model, run_tool
from helpers.tiny_runs import cfg_options, cls_options

PRETRAIN = 'configs/pretrain'
FULL_CONFIGS = sorted(p.name for p in (ROOT / PRETRAIN).glob('lape_deit_*_in1k.py'))
ALL_CONFIGS = sorted(p.name for p in (ROOT / PRETRAIN).glob('*.py') if not p.name.endswith('_add.py'))
TINY = f'{PRETRAIN}/lape_deit_tiny_tiny-imagenet.py'
SEG_TINY = 'configs/upernet_lape_vit_t_tiny-ade_128x128.py'
NUM_LAYERS = 4  # the tests' models: 4 blocks instead of 12, to stay within seconds


@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_config_builds_and_add_twin_differs_only_in_pe_join(name):
    cfg = Config.fromfile(ROOT / PRETRAIN / name)
    cfg.model.backbone.num_layers = 1  # the structure is what is checked, not the depth
    model = build_model(cfg.model, 'mmpretrain')
    assert type(model.backbone).__name__ == 'LaPEViT' and model.backbone.output_cls_token
    with torch.no_grad():
        size = cfg.model.backbone.img_size
        logits = model(torch.randn(1, 3, size, size), mode='tensor')
    assert logits.shape == (1, cfg.model.head.num_classes)
    twin = Config.fromfile(ROOT / PRETRAIN / name.replace('.py', '_add.py'))
    assert twin.model.backbone.pop('pe_join') == 'add' and cfg.model.backbone.pop('pe_join') == 'lape'
    cfg.model.backbone.pop('num_layers')
    assert twin.to_dict() == cfg.to_dict()


@pytest.mark.parametrize('name', FULL_CONFIGS)
def test_full_configs_follow_the_deit_recipe(name):
    cfg = Config.fromfile(ROOT / PRETRAIN / name)
    gpus = {'tiny': 4, 'small': 4, 'base': 16}[cfg.model.backbone.arch]  # as the config comments say
    assert gpus * cfg.train_dataloader.batch_size == 1024
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(5e-4 * 1024 / 512)
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05 and cfg.optim_wrapper.clip_grad is None
    assert cfg.train_cfg.max_epochs == 300
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, cosine.type, cosine.begin) == ('LinearLR', 5, 'CosineAnnealingLR', 5)
    assert (cfg.train_dataloader.sampler.type, cfg.train_dataloader.sampler.num_repeats) == ('RepeatAugSampler', 3)
    assert cfg.model.backbone.drop_path_rate == 0.1 and cfg.model.backbone.img_size == 224
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert [(a.type, a.alpha) for a in cfg.model.train_cfg.augments] == [('Mixup', 0.8), ('CutMix', 1.0)]
    steps = {step.type: step for step in cfg.train_dataloader.dataset.pipeline}
    assert (steps['RandAugment'].magnitude_level, steps['RandAugment'].magnitude_std) == (9, 0.5)
    assert steps['RandomErasing'].erase_prob == 0.25 and steps['RandomResizedCrop'].scale == 224
    assert (cfg.val_evaluator.type, cfg.val_evaluator.topk) == ('Accuracy', (1, 5))


def _fake_mmpretrain_classifier() -> tuple[LaPEViT, dict]:
    backbone = LaPEViT(arch='tiny', embed_dims=64, num_layers=2, num_heads=2, img_size=64)
    state_dict = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state_dict.update({'head.layers.head.weight': torch.randn(7, 64), 'head.layers.head.bias': torch.randn(7)})
    return backbone, {'state_dict': state_dict}


def test_mmpretrain_classifier_checkpoint_gives_its_backbone():
    backbone, checkpoint = _fake_mmpretrain_classifier()
    native, fmt = to_lape_state_dict(checkpoint)
    assert fmt == 'timm'
    for key, value in backbone.state_dict().items():
        assert torch.equal(native[key], value), key


def test_mmpretrain_classifier_checkpoint_keeps_its_head():
    _, checkpoint = _fake_mmpretrain_classifier()
    native, _ = to_lape_state_dict(checkpoint)
    assert torch.equal(native['head.weight'], checkpoint['state_dict']['head.layers.head.weight'])


# ---------------------------------------------------------------- end to end through tools/
def _options(data_root: Path, **extra) -> list[str]:
    return cfg_options(cls_options(data_root, **{'model.backbone.num_layers': NUM_LAYERS, **extra}))


def _accuracy(output: str) -> tuple[float, float]:
    top1, top5 = re.findall(r'accuracy/top1: ([\d.]+)\s+accuracy/top5: ([\d.]+)', output)[-1]
    return float(top1), float(top5)


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """Two epochs of the tiny-ImageNet config through tools/train.py: (data root, checkpoint, log)."""
    root = make_tiny_imagenet(tmp_path_factory.mktemp('tiny_imagenet'), train_per_class=4, val_per_class=2)
    work = tmp_path_factory.mktemp('pretrain')
    out = run_tool('tools/train.py', TINY, '--work-dir', str(work), *_options(root))
    return root, work / 'epoch_2.pth', out


@pytest.mark.slow
def test_train_then_test_reports_top1_top5(pretrained, tmp_path):
    root, checkpoint, train_out = pretrained
    assert checkpoint.exists() and 'RepeatAugSampler' in train_out
    out = run_tool('tools/test.py', TINY, str(checkpoint), '--work-dir', str(tmp_path), *_options(root))
    top1, top5 = _accuracy(out)
    assert 0 <= top1 <= top5 <= 100
    assert (top1, top5) == _accuracy(train_out)  # the same weights on the same images


def _backbone_of(checkpoint: Path) -> dict:
    state_dict = safe_load(checkpoint)['state_dict']
    return {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}


@pytest.mark.slow
def test_checkpoint_inits_segmentation_backbone_unchanged(pretrained):
    """init_cfg=dict(type='Pretrained') in the tiny-ADE config: every backbone tensor arrives as trained."""
    _, checkpoint, _ = pretrained
    cfg = Config.fromfile(ROOT / SEG_TINY)
    cfg.model.backbone.update(num_layers=NUM_LAYERS, out_indices=(0, 1, 2, 3),
                              init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint)))
    segmentor = build_model(cfg.model, 'mmseg')
    segmentor.init_weights()
    trained, loaded = _backbone_of(checkpoint), segmentor.backbone.state_dict()
    assert loaded.keys() == trained.keys() and any('.pe_norm.' in k for k in loaded)
    for key, value in trained.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.slow
def test_checkpoint_loads_in_timm(pretrained):
    """The trained mmpretrain classifier in timm (``num_classes`` in the overlay, so timm keeps the head):
    every backbone tensor and the trained head arrive, and timm's logits are mmpretrain's."""
    _, checkpoint, _ = pretrained
    model = timm.create_model('lape_vit_tiny_patch16_224', pretrained=True, num_classes=NUM_CLASSES,
                              pretrained_cfg_overlay=dict(file=str(checkpoint), num_classes=NUM_CLASSES),
                              num_layers=NUM_LAYERS, img_size=128).eval()
    loaded = model.state_dict()
    for key, value in _backbone_of(checkpoint).items():
        assert torch.equal(loaded[key], value), key
    head = {k: v for k, v in safe_load(checkpoint)['state_dict'].items() if k.startswith('head.layers.head.')}
    assert head and head['head.layers.head.weight'].abs().sum() > 0  # trained, so the comparison can fail
    assert torch.equal(loaded['head.weight'], head['head.layers.head.weight'])
    assert torch.equal(loaded['head.bias'], head['head.layers.head.bias'])
    cfg = Config.fromfile(ROOT / TINY)
    cfg.model.backbone.num_layers = NUM_LAYERS
    classifier = build_model(cfg.model, 'mmpretrain').eval()
    classifier.load_state_dict(safe_load(checkpoint)['state_dict'])
    img = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(model(img), classifier(img, mode='tensor'), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- the study
def test_reproduce_quick_writes_tables_and_figures(tmp_path):
    from tools.study import QUICK, SETTINGS, reproduce
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread mostly waits, several times slower on a busy CPU
    try:
        report = reproduce(tmp_path, QUICK, progress=False)
    finally:
        torch.set_num_threads(threads)
    for setting in SETTINGS:
        assert f'| {setting.name} |' in report
    assert report.count('95% CI') == 2 and report.count('(PE std = token std)') >= 4
    assert (tmp_path / 'results.md').read_text() == report
    figures = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob('*.png')}
    assert {'accuracy.png', 'digits/contact_sheet.png', 'position/lape_token_similarity.png'} <= figures


def test_deep_study_quick_writes_every_part_and_resumes(tmp_path, monkeypatch):
    from tools.study import DEEP_QUICK, DeepStudy, reproduce_deep
    from tools.study.deep import FINETUNE, PRETRAIN, SCRATCH, Job
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = reproduce_deep(tmp_path, DEEP_QUICK, progress=False)
        first = json.loads((tmp_path / 'results.json').read_text())['runs']
        # A stopped study: one run's result is gone; only that run trains again, to the same numbers.
        lost = Job('scratch', SCRATCH[1], DEEP_QUICK.seeds[-1])
        (tmp_path / 'cache' / f'{lost.name}.json').unlink()
        ran = []
        run_job = DeepStudy._run_job
        monkeypatch.setattr(DeepStudy, '_run_job', lambda self, job: ran.append(job) or run_job(self, job))
        reproduce_deep(tmp_path, DEEP_QUICK, progress=False)
        assert ran == [lost]
        # Other pretraining: the checkpoints and the fine-tunes that start from them are stale, nothing else.
        ran.clear()
        reproduce_deep(tmp_path, dataclasses.replace(DEEP_QUICK, pretrain_epochs=2), progress=False)
        assert {job.group for job in ran} == {'pretrain', 'finetune'}
        assert len(ran) == len(PRETRAIN) + len(FINETUNE) * len(DEEP_QUICK.seeds)
    finally:
        torch.set_num_threads(threads)
    again = json.loads((tmp_path / 'results.json').read_text())['runs']
    assert {k: v for k, v in again[lost.name].items() if k != 'seconds'} == \
        {k: v for k, v in first[lost.name].items() if k != 'seconds'}
    for setting in SCRATCH + FINETUNE + PRETRAIN:
        assert f'| {setting.label} |' in report
    assert '| lape − add |' in report and '| add_lape from add (function-keeping) − add from add |' in report
    # The function-keeping start computes the add checkpoint's function: same accuracy on its task.
    for seed in DEEP_QUICK.seeds:
        keeping = first[Job('finetune', FINETUNE[2], seed).name]['start_accuracy_on_pretrain_task']
        assert keeping == first[Job('pretrain', PRETRAIN[0], DEEP_QUICK.seeds[0]).name]['accuracy']['32']
    figures = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob('*.png')}
    assert {'accuracy_vs_resolution.png', 'pe_similarity/contact_sheet.png'} <= figures
