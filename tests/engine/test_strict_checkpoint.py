"""StrictCheckpointHook: a checkpoint that does not fit the model is refused, with advice per purpose
(resume, load_from, evaluation)."""
import re
import sys

import pytest
import torch

from lape_mm import LaPEViT

from conftest import run_process, runner_stub, tiny_vit_kwargs
from helpers.tiny_runs import TINY_SEG as TINY, small_run_options


@pytest.mark.parametrize('resume,training,advice', [(True, True, '--resume continues a run of this config'),
                                                    (False, True, 'load_from starts training from a whole model'),
                                                    (False, False, 'Evaluate a checkpoint written by training')])
def test_strict_checkpoint_hook_refuses_what_does_not_fit_for_every_purpose(tmp_path, resume, training, advice):
    from lape_mm.engine import StrictCheckpointHook
    from lape_mm.errors import CheckpointError
    model = LaPEViT(**tiny_vit_kwargs())
    runner = runner_stub(tmp_path, training, model=model, _load_from=str(tmp_path / 'other.pth'), _resume=resume)
    StrictCheckpointHook().after_load_checkpoint(runner, {'state_dict': model.state_dict()})  # fits: silent
    state_dict = {k: v for k, v in model.state_dict().items() if k != 'norm.bias'}
    with pytest.raises(CheckpointError, match=f'(?s)other.pth does not fit.*norm.bias.*{advice}'):
        StrictCheckpointHook().after_load_checkpoint(runner, {'state_dict': state_dict})


@pytest.mark.slow
def test_resume_from_a_pretraining_checkpoint_says_it_is_not_of_this_config(tiny_ade, tmp_path):
    """--resume of a segmentation config given what configs/pretrain writes: classifier weights, one AdamW
    parameter group, mmengine's run state."""
    from mmengine.logging import MessageHub
    backbone = LaPEViT(**tiny_vit_kwargs())
    classifier = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    classifier['head.layers.head.weight'] = torch.zeros(10, 64)
    checkpoint = tmp_path / 'epoch_4.pth'
    torch.save({'state_dict': classifier, 'optimizer': torch.optim.AdamW(backbone.parameters()).state_dict(),
                'message_hub': MessageHub.get_instance('pretrain').state_dict(),
                'meta': {'epoch': 4, 'iter': 52}}, checkpoint)
    proc = run_process([sys.executable, 'tools/train.py', TINY, '--work-dir', str(tmp_path / 'w'),
                        '--resume', str(checkpoint), *small_run_options(tiny_ade)])
    assert proc.returncode != 0
    assert 'parameter groups' not in proc.stderr
    assert re.search(r'(?s)epoch_4\.pth does not fit the model.*It is not a checkpoint of this config.*--pretrained.*'
                     r'load_from', proc.stderr), proc.stderr[-3000:]
