"""Detection and instance segmentation: SimpleFPN, Mask R-CNN configs, and tools end to end."""
import json
import math
import pickle
import re

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from lape_mm.models import LaPEViT
from lape_mm.models.necks import SimpleFPN
from tools.tiny_data.coco import CLASSES, make_tiny_coco

from conftest import ROOT, assert_baseline_twin, build_model, logged_losses, logged_metrics, run_tool, tiny_vit_kwargs
from helpers.tiny_runs import cfg_options, det_options


DET_CONFIGS = sorted(p.name for p in (ROOT / 'configs').glob('mask_rcnn_*simplefpn*.py') if not p.name.endswith('_add.py'))
BASE = 'configs/mask_rcnn_lape_vit_b_simplefpn_coco.py'
TINY = 'configs/mask_rcnn_lape_vit_t_simplefpn_tiny-coco_160.py'


def _small_tiny_cfg(num_layers: int = 2) -> Config:
    """The tiny detection config with a shallower backbone (one global block, the last)."""
    cfg = Config.fromfile(ROOT / TINY)
    cfg.model.backbone.update(num_layers=num_layers, global_attn_indexes=(num_layers - 1,))
    return cfg


# ---------------------------------------------------------------- SimpleFPN
@pytest.mark.parametrize('img_hw', [(128, 128), (96, 160)])
def test_simple_fpn_levels_follow_vitdet(img_hw):
    """A stride-16 map becomes strides 4, 8, 16, 32 and 64 (the RPN's anchor strides)."""
    h, w = img_hw
    neck = SimpleFPN(in_channels=64, out_channels=32)
    outs = neck((torch.randn(2, 64, h // 16, w // 16),))
    sizes = [o.shape[-2:] for o in outs]
    assert sizes == [(h // s, w // s) for s in (4, 8, 16, 32)] + [(-(-h // 64), -(-w // 64))]
    assert all(o.shape[:2] == (2, 32) for o in outs)
    # ViTDet's widths before the 1x1 convs: C/4 after two deconvolutions, C/2 after one.
    assert neck.rescales[0][-1].out_channels == 16 and neck.rescales[1].out_channels == 32
    assert len(SimpleFPN(64, 32, num_outs=4)((torch.randn(1, 64, 4, 4),))) == 4


def test_simple_fpn_uses_channel_layer_norm_and_returns_contiguous_maps():
    """LN2d normalizes over channels only, and the maps come out contiguous: mmcv's RoIAlign
    reads raw NCHW memory, so a channels-last view would give it scrambled features."""
    neck = SimpleFPN(in_channels=8, out_channels=8)
    norm = neck.convs[2][0].norm
    x = torch.randn(2, 8, 3, 5)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (8,), norm.weight, norm.bias, 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)
    outs = neck((torch.randn(1, 8, 4, 6),))
    assert all(o.is_contiguous() for o in outs)


@pytest.mark.parametrize('kwargs, message', [
    (dict(scale_factors=(4.0, 3.0)), r'scale_factors \[4.0, 3.0\]'),
    (dict(scale_factors=(1.0, 2.0)), 'finest level first'),
    (dict(scale_factors=(2.0, 2.0)), 'distinct entries'),
    (dict(num_outs=3), 'num_outs=3'),
])
def test_simple_fpn_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimpleFPN(in_channels=8, **kwargs)


def test_simple_fpn_names_a_channel_mismatch():
    with pytest.raises(ValueError, match='expects 8 input channels, got 4'):
        SimpleFPN(in_channels=8)((torch.randn(1, 4, 2, 2),))


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize('name', DET_CONFIGS)
def test_config_builds_mask_rcnn_with_lape_backbone(name):
    cfg = Config.fromfile(ROOT / 'configs' / name)
    model = build_model(cfg.model, 'mmdet')
    assert type(model).__name__ == 'MaskRCNN' and isinstance(model.backbone, LaPEViT)
    assert isinstance(model.neck, SimpleFPN) and model.neck.in_channels == model.backbone.embed_dims
    base = Config.fromfile(ROOT / 'configs' / name.replace('.py', '_add.py'))  # every config has its twin
    assert_baseline_twin(cfg, base)


def test_coco_config_is_vitdet_recipe():
    cfg = Config.fromfile(ROOT / BASE)
    backbone = cfg.model.backbone
    assert (backbone.window_size, backbone.global_attn_indexes, backbone.with_cls_token) == (14, (2, 5, 8, 11), False)
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1)
    assert cfg.optim_wrapper.paramwise_cfg == dict(num_layers=12, layer_decay_rate=0.7)
    train = cfg.train_dataloader
    assert train.dataset.times * cfg.train_cfg.max_epochs == 100  # epochs over COCO
    lsj = {t.type: t for t in train.dataset.dataset.pipeline}
    assert lsj['RandomResize'].ratio_range == (0.1, 2.0) and lsj['RandomCrop'].crop_size == (1024, 1024)
    # Training and test inputs are padded to the PE grid's size, so the PE is never resized.
    test_pad = next(t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'Pad')
    assert cfg.model.data_preprocessor.batch_augments[0].size == test_pad.size == backbone.img_size
    assert cfg.model.data_preprocessor.pad_size_divisor % backbone.patch_size == 0


def test_tiny_config_classes_match_the_tiny_dataset():
    cfg = Config.fromfile(ROOT / TINY)
    assert cfg.train_dataloader.dataset.dataset.metainfo.classes == CLASSES
    assert cfg.model.roi_head.bbox_head.num_classes == cfg.model.roi_head.mask_head.num_classes == len(CLASSES)


# ---------------------------------------------------------------- model
def test_mask_rcnn_trains_and_predicts_on_non_square_input():
    """96x160 input: a 6x10 grid that windows of 5 do not tile, through every Mask R-CNN loss."""
    from mmdet.testing import demo_mm_inputs
    model = build_model(_small_tiny_cfg().model, 'mmdet')
    batch = demo_mm_inputs(2, [(3, 96, 160)] * 2, num_classes=len(CLASSES), with_mask=True)
    losses = model(**model.data_preprocessor(batch, True), mode='loss')
    assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'} <= losses.keys()
    loss, _ = model.parse_losses(losses)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.backbone.pos_embed.grad.abs().sum() > 0
    assert model.backbone.blocks[0].pe_norm.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(batch, False), mode='predict')
    assert len(results) == 2 and results[0].pred_instances.masks.shape[-2:] == (96, 160)


def test_window_attention_stays_in_its_window_on_non_square_grid():
    """6x10 grid, windows of 4 (padded to 8x12): a change in patch (5, 9) reaches its window only."""
    model = LaPEViT(**tiny_vit_kwargs(num_layers=1, with_cls_token=False, window_size=4)).eval()
    img = torch.randn(1, 3, 96, 160)
    changed = img.clone()
    changed[..., 80:96, 144:160] += 1
    with torch.no_grad():
        diff = (model(changed)[0] - model(img)[0]).abs().sum(1)[0] > 1e-6
    window = torch.zeros(6, 10, dtype=torch.bool)
    window[4:, 8:] = True
    assert torch.equal(diff, window)


def test_layer_decay_applies_to_detector_backbone():
    """lr = 1e-4 * 0.7 ** (depth + 1 - layer): embeddings lowest, neck and heads the full lr."""
    model = build_model(_small_tiny_cfg(num_layers=3).model, 'mmdet')
    optim_cfg = Config.fromfile(ROOT / BASE).optim_wrapper
    optim_cfg.paramwise_cfg.num_layers = 3
    groups = build_optim_wrapper(model, optim_cfg).optimizer.param_groups
    group_of = {id(p): g for g in groups for p in g['params']}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(group_of) == len(trainable) == sum(len(g['params']) for g in groups)
    params = dict(model.named_parameters())
    lr = {name: group_of[id(params[name])]['lr'] for name in params}
    assert lr['backbone.patch_embed.proj.weight'] == pytest.approx(1e-4 * 0.7 ** 4)
    assert lr['backbone.blocks.0.attn.qkv.weight'] == pytest.approx(1e-4 * 0.7 ** 3)
    assert lr['backbone.blocks.2.pe_norm.weight'] == pytest.approx(1e-4 * 0.7)
    assert lr['neck.convs.0.0.conv.weight'] == lr['roi_head.mask_head.conv_logits.weight'] == pytest.approx(1e-4)
    wd = {name: group_of[id(params[name])]['weight_decay'] for name in params}
    assert wd['neck.convs.0.0.conv.weight'] == 0.1
    assert wd['backbone.pos_embed'] == wd['neck.convs.0.0.ln.weight'] == wd['rpn_head.rpn_cls.bias'] == 0


def test_det_inferencer_refuses_checkpoint_that_does_not_fit(tmp_path):
    """StrictDetInferencer (tools/infer.py with a detection config): a checkpoint of a deeper backbone is
    refused, naming the keys, before anything is drawn; the detector's own checkpoint loads exactly."""
    from lape_mm.apis import StrictDetInferencer, detect_image
    from lape_mm.checkpoint import CheckpointError
    cfg = _small_tiny_cfg()
    config = tmp_path / 'detector.py'
    cfg.dump(config)
    deeper = build_model(_small_tiny_cfg(num_layers=3).model, 'mmdet').state_dict()
    torch.save({'state_dict': deeper}, tmp_path / 'deeper.pth')
    image = next((make_tiny_coco(tmp_path / 'coco', num_train=1, num_val=1) / 'val2017').glob('*.jpg'))
    with pytest.raises(CheckpointError, match=r'deeper\.pth does not fit the model:\n\s+\d+ checkpoint keys the '
                                              r'model does not have \(backbone: \d+\): backbone\.blocks\.2\.'):
        detect_image(str(config), str(tmp_path / 'deeper.pth'), str(image), tmp_path / 'det.jpg', device='cpu')
    assert not (tmp_path / 'det.jpg').exists()
    own = build_model(cfg.model, 'mmdet').state_dict()
    torch.save({'state_dict': own, 'meta': {'dataset_meta': {'classes': CLASSES}}}, tmp_path / 'own.pth')
    inferencer = StrictDetInferencer(model=str(config), weights=str(tmp_path / 'own.pth'), device='cpu')
    loaded = inferencer.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in own.items())


# ---------------------------------------------------------------- data
def test_tiny_coco_is_coco_and_classes_follow_position(tmp_path):
    from pycocotools.coco import COCO
    root = make_tiny_coco(tmp_path, num_train=6, num_val=2, seed=3)
    coco = COCO(str(root / 'annotations/instances_train2017.json'))
    assert len(coco.getImgIds()) == 6 and sorted(c['name'] for c in coco.loadCats(coco.getCatIds())) == sorted(CLASSES)
    top_classes = {1, 16}  # person, bird: the upper half; car, dog: the lower
    for ann in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(ann['image_id'])[0]
        x, y, w, h = ann['bbox']
        in_top = y + h <= image['height'] / 2
        assert in_top == (ann['category_id'] in top_classes) and (in_top or y >= image['height'] / 2)
        assert coco.annToMask(ann).sum() == pytest.approx(ann['area'], rel=0.05)


# ---------------------------------------------------------------- end to end
def _run_options(root, **extra) -> list[str]:
    """--cfg-options for the tiny config on ``root``: 2 blocks, one epoch of 4 iterations."""
    # score_thr 0: an untrained model still predicts, so AP is computed
    return cfg_options(det_options(root, **{'model.test_cfg.rcnn.score_thr': 0.0, **extra}))


def _coco_ap(output: str, metric: str) -> float:
    return float(re.findall(rf'coco/{metric}_mAP: ([\d.]+)', output)[-1])


@pytest.mark.slow
def test_train_test_and_inferencer_end_to_end(tmp_path):
    from mmdet.apis import DetInferencer
    root = make_tiny_coco(tmp_path / 'coco', num_train=8, num_val=3, seed=1)
    work = tmp_path / 'work'
    train_out = run_tool('tools/train.py', TINY, '--work-dir', str(work), *_run_options(root))
    assert 'coco/segm_mAP' in train_out and (work / 'epoch_1.pth').exists()
    results, shows = tmp_path / 'results.pkl', tmp_path / 'shows'
    out = run_tool('tools/test.py', TINY, str(work / 'epoch_1.pth'), '--work-dir', str(tmp_path / 'test'),
                   '--out', str(results), '--show-dir', str(shows), *_run_options(root))
    assert 0 <= _coco_ap(out, 'bbox') <= 1 and 0 <= _coco_ap(out, 'segm') <= 1
    metrics = logged_metrics(out, r'coco/\w+')  # box and mask AP, AP50, AP75, ...
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= metrics.keys()
    assert metrics == logged_metrics(train_out, r'coco/\w+')  # the final checkpoint: training's last validation
    with open(results, 'rb') as f:
        dumped = pickle.load(f)
    assert len(dumped) == 3 and 'masks' in dumped[0]['pred_instances']
    assert len(list(shows.rglob('*.jpg'))) == 3

    # The config as trained (the dump in the work dir) + checkpoint serve mmdet's inferencer.
    inferencer = DetInferencer(model=str(work / TINY.split('/')[-1]), weights=str(work / 'epoch_1.pth'),
                               device='cpu', show_progress=False)
    image = next((root / 'val2017').glob('*.jpg'))
    result = inferencer(str(image), out_dir=str(tmp_path / 'infer'), pred_score_thr=0.0, no_save_pred=False)
    prediction = result['predictions'][0]
    assert len(prediction['labels']) == len(prediction['masks']) > 0
    assert set(prediction['labels']) <= set(range(len(CLASSES)))
    assert (tmp_path / 'infer' / 'vis' / image.name).exists()
    saved = json.loads((tmp_path / 'infer' / 'preds' / f'{image.stem}.json').read_text())
    assert saved['labels'] == prediction['labels']
    # tools/test.py's dumped predictions for that image are the model's as the inferencer runs it: the AP of an
    # untrained detector is about 0, so the metric equality above alone could not tell the weights apart.
    dumped_image = next(d['pred_instances'] for d in dumped if d['img_path'].endswith(image.name))
    assert dumped_image['labels'].tolist() == prediction['labels']
    torch.testing.assert_close(dumped_image['scores'], torch.tensor(prediction['scores']))
    torch.testing.assert_close(dumped_image['bboxes'], torch.tensor(prediction['bboxes']))


@pytest.mark.slow
def test_mask_rcnn_trains_with_cpu_amp(tmp_path):
    """--amp on a CPU is bf16 autocast: mmcv's NMS / RoIAlign get fp32 (they have no bf16 CPU kernel)."""
    root = make_tiny_coco(tmp_path / 'coco', num_train=4, num_val=2, seed=1)
    out = run_tool('tools/train.py', TINY, '--amp', '--work-dir', str(tmp_path / 'work'), *_run_options(root),
                   env={'CUDA_VISIBLE_DEVICES': ''})  # a CPU run also on a GPU machine, where --amp is fp16
    assert 'bfloat16' in out and 'coco/bbox_mAP' in out
    losses = logged_losses(out)
    assert losses and all(math.isfinite(v) for v in losses)


def test_logged_losses_read_nan_and_inf():
    """What the finiteness checks above read: a NaN or inf loss is read as one, not skipped."""
    log = 'Iter(train) [1/2]  lr: 1.0e-04  loss: nan  loss_cls: 0.6\nIter(train) [2/2]  loss: inf  loss_cls: 1.5'
    losses = logged_losses(log)
    assert len(losses) == 2 and math.isnan(losses[0]) and losses[1] == math.inf


@pytest.mark.slow
def test_infer_tool_runs_detection_configs(tmp_path):
    from tools.tiny_data.coco import CLASSES, make_tiny_coco
    cfg = Config.fromfile(ROOT / 'configs/mask_rcnn_lape_vit_t_simplefpn_tiny-coco_160.py')
    cfg.model.backbone.update(num_layers=2, global_attn_indexes=(1,))
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # an untrained model still predicts
    config, checkpoint = tmp_path / 'detector.py', tmp_path / 'detector.pth'
    cfg.dump(config)
    torch.save({'state_dict': build_model(cfg.model, 'mmdet').state_dict(), 'meta': {'dataset_meta': {'classes': CLASSES}}},
               checkpoint)
    image = next((make_tiny_coco(tmp_path / 'coco', num_train=1, num_val=1) / 'val2017').glob('*.jpg'))
    out = run_tool('tools/infer.py', str(config), str(checkpoint), str(image), '--out', str(tmp_path / 'det.jpg'))
    assert re.search(r'wrote .*det\.jpg; \d+ detections', out)
    assert Image.open(tmp_path / 'det.jpg').size == Image.open(image).size
