"""tools/export_onnx.py: ONNX export of ViT-Adapter at any size, sizes the exported model cannot take named before
exporting, and no .onnx file left behind by an export that failed."""
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from lape_mm import LaPEViT, LaPEViTAdapter
from tools.analysis.onnx_export import export_onnx, onnx_max_error

from conftest import ROOT, tiny_vit_kwargs
from helpers.tiny_runs import TINY_SEG as TINY


TINY_ADAPTER = 'configs/upernet_lape_vit_adapter_t_tiny-ade_128x128.py'


@pytest.mark.slow
def test_onnx_vit_adapter_runs_at_sizes_other_than_the_traced_one(tmp_path):
    model = LaPEViTAdapter(arch='tiny', num_layers=1, embed_dims=48, num_heads=3, img_size=64, deform_num_heads=3,
                           conv_inplane=16, interaction_indexes=[[0, 0]], adapter_norm_cfg=dict(type='BN'))
    path = tmp_path / 'adapter.onnx'
    export_onnx(model.eval(), path, (64, 64), model.size_divisor)
    for shape in [(1, 3, 64, 64), (1, 3, 96, 64), (2, 3, 32, 160)]:  # traced; non-square; one stride-32 row
        assert onnx_max_error(path, model, shape) < 1e-4


class _Unexportable(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError('not exportable')


def test_a_failed_export_leaves_no_file(tmp_path):
    from tools.export_onnx import export_checked
    out = tmp_path / 'model.onnx'
    with pytest.raises(Exception, match='not exportable'):
        export_checked(_Unexportable(), str(out), (32, 32), 16, [(32, 32)], atol=1e-4)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_export_that_differs_from_pytorch_is_not_written(tmp_path):
    from tools.export_onnx import export_checked
    out = tmp_path / 'model.onnx'
    model = LaPEViT(**tiny_vit_kwargs(num_layers=1)).eval()
    with pytest.raises(SystemExit, match='differs from PyTorch.*not written'):
        export_checked(model, str(out), (64, 64), 16, [(64, 64)], atol=-1.)  # no export can pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize('check', [('0', '64'), ('64', '48')], ids=['zero', 'not_x32'])
def test_export_tool_names_sizes_the_model_cannot_take(tmp_path, check):
    """ViT-Adapter takes multiples of 32: 48 (a multiple of the patch, 16) is refused, as 0 is."""
    out = tmp_path / 'adapter.onnx'
    torch.save({'state_dict': {}}, tmp_path / 'empty.pth')
    proc = subprocess.run([sys.executable, 'tools/export_onnx.py', TINY_ADAPTER, str(tmp_path / 'empty.pth'),
                           '--backbone-only', '--out', str(out), '--check', *check],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f'size {check[0]}x{check[1]}' in proc.stderr and 'positive multiples of 32' in proc.stderr
    assert 'Traceback' not in proc.stderr and not out.exists()


def test_export_onnx_checks_out_folder_before_exporting(tmp_path, monkeypatch):
    import runpy
    out = tmp_path / 'missing' / 'model.onnx'
    monkeypatch.setattr(sys, 'argv', ['export_onnx.py', str(ROOT / TINY), str(tmp_path / 'none.pth'), '--out', str(out)])
    with pytest.raises(SystemExit, match=f'--out folder {re.escape(str(out.parent))} does not exist'):
        runpy.run_path(str(ROOT / 'tools/export_onnx.py'), run_name='__main__')
