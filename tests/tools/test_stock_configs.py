"""LaPEViT dropped into a stock mmseg config, as README's "Use it in any mmseg / mmdet 3.x config" shows,
trains and evaluates through mmseg's own tools/train.py as mmseg's own ViT would: with the stock whole-image
test pipeline, whose resized images (e.g. 683x512) are not multiples of the patch size."""
import re
from pathlib import Path

import mmseg
import pytest

from conftest import ROOT, logged_metrics, run_tool
from helpers.tiny_runs import cfg_options

MMSEG_TRAIN = Path(mmseg.__file__).parent / '.mim/tools/train.py'
STOCK = 'mmseg::vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py'


def readme_snippet(heading: str) -> str:
    """The first python block after ``heading`` in README.md."""
    text = (ROOT / 'README.md').read_text()
    return re.search(r'```python\n(.*?)```', text[text.index(heading):], re.S).group(1)


@pytest.mark.slow
def test_readme_snippet_in_mmseg_vit_config_trains_and_evaluates_through_mmseg_tools(tiny_ade, tmp_path):
    config = tmp_path / 'upernet_lape.py'
    config.write_text(f"_base_ = ['{STOCK}']\n" + readme_snippet('## Use it in any mmseg / mmdet 3.x config'))
    small = {'model.backbone.arch': 'tiny', 'model.backbone.num_layers': 4, 'model.backbone.out_indices': [0, 1, 2, 3],
             'model.backbone.init_cfg': None, 'model.neck.in_channels': [192] * 4, 'model.neck.out_channels': 192,
             'model.decode_head.in_channels': [192] * 4, 'model.decode_head.channels': 64,
             'model.auxiliary_head.in_channels': 192, 'model.auxiliary_head.channels': 32,
             'train_dataloader.dataset.data_root': tiny_ade, 'val_dataloader.dataset.data_root': tiny_ade,
             'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
             'train_dataloader.persistent_workers': False, 'val_dataloader.num_workers': 0,
             'val_dataloader.persistent_workers': False, 'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2,
             'default_hooks.checkpoint.interval': 2, 'default_hooks.logger.interval': 1}
    out = run_tool(str(MMSEG_TRAIN), str(config), '--work-dir', str(tmp_path / 'work'), *cfg_options(small))
    assert "type='LaPEViT'" in out and (tmp_path / 'work' / 'iter_2.pth').exists()
    assert logged_metrics(out, 'aAcc|mIoU|mAcc').keys() == {'aAcc', 'mIoU', 'mAcc'}  # validated whole images
