"""Analysis tools: PE similarity figures, benchmark (correctness, never speed), FLOPs, ONNX export.

The tools' command lines run in this process (``run_main``): a new interpreter would spend most of
each test importing torch and the OpenMMLab stack; tests/test_docs.py runs their --help as a user does."""
import json

import pytest
import torch
import torch.nn.functional as F

from lape_mm import LaPEViT
from tools.analysis import layer_pos_embeds, layer_similarity_matrix, pe_caption, token_similarity_maps
from tools.analysis.benchmark import BenchmarkResult, BenchmarkSettings, run_benchmark
from tools.analysis.benchmark_report import markdown, ratio_lines, write_report
from tools.analysis.build import build_model, load_config
from tools.analysis.flops import TensorForward, flop_analyzer
from tools.analysis.memory import peak_memory
from tools.analysis.onnx_export import export_onnx, onnx_max_error

from conftest import ROOT, randomize_norms, run_main, tiny_vit_kwargs

TINY_UPERNET = str(ROOT / 'configs/upernet_lape_vit_t_tiny-ade_128x128.py')
QUIET = dict(log=lambda line: None)


# ---------------------------------------------------------------- PE similarity
def test_layer_pos_embeds_are_the_per_block_pes():
    lape = LaPEViT(**tiny_vit_kwargs()).eval()
    randomize_norms(lape)
    pes = layer_pos_embeds(lape, (3, 5))
    assert len(pes) == 3 and all(pe.shape == (15, 64) for pe in pes)
    # p_0 = LN_0(pe resized to 3x5), cls slot dropped; p_1 = LN_1(p_0)
    full = lape.pos_embed_terms((3, 5))[1]
    torch.testing.assert_close(pes[1], full[1][0, 1:])
    norm = lape.blocks[1].pe_norm
    torch.testing.assert_close(full[1], F.layer_norm(full[0], (64,), norm.weight, norm.bias, norm.eps))

    add = LaPEViT(**tiny_vit_kwargs(pe_join='add'))
    (raw,) = layer_pos_embeds(add)
    torch.testing.assert_close(raw, add.pos_embed[0, 1:])
    assert 'raw PE' in pe_caption(add)
    with pytest.raises(ValueError, match="pe_type='none'"):
        layer_pos_embeds(LaPEViT(**tiny_vit_kwargs(pe_type='none')))


def test_similarity_maps_and_matrix():
    pes = [torch.randn(12, 8), torch.randn(12, 8)]
    maps = token_similarity_maps(pes, (3, 4), token=(1, 2))
    assert maps.shape == (2, 3, 4)
    torch.testing.assert_close(maps[:, 1, 2], torch.ones(2))
    matrix = layer_similarity_matrix(pes + [2 * pes[0]])
    torch.testing.assert_close(matrix, matrix.T)
    torch.testing.assert_close(matrix.diagonal(), torch.ones(3))
    torch.testing.assert_close(matrix[0, 2], torch.tensor(1.))
    with pytest.raises(ValueError, match='outside the 3x4 grid'):
        token_similarity_maps(pes, (3, 4), token=(3, 0))


def test_contact_sheet_shows_no_layer_similarity_for_a_single_pe(tmp_path):
    """'add' and 'share' have one PE: a 1x1 layer-similarity map compares nothing, so its row leaves
    the panel empty, and a sheet of single-PE models has no such column."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from tools.analysis.pe_similarity import contact_sheet, save_figures

    def panel(pes):
        return token_similarity_maps(pes, (3, 4)), layer_similarity_matrix(pes), 'caption'

    pes = [torch.randn(12, 8) for _ in range(3)]
    fig = contact_sheet(plt, {'lape': panel(pes), 'add': panel(pes[:1])})
    assert [ax.get_title() for ax in fig.axes].count('layer similarity') == 1
    assert all(image.get_array().shape != (1, 1) for ax in fig.axes for image in ax.images)
    assert [len(ax.images) for ax in fig.axes[4:]] == [1, 0, 0, 0]  # the add row: its one token map only
    plt.close(fig)
    fig = contact_sheet(plt, {'add': panel(pes[:1]), 'share': panel(pes[1:2])})
    assert len(fig.axes) == 2 and 'layer similarity' not in [ax.get_title() for ax in fig.axes]
    plt.close(fig)
    written = save_figures({'add': (pes[:1], (3, 4), 'caption')}, tmp_path)
    assert {p.name for p in written} == {'add_token_similarity.png', 'add_layer_similarity.png', 'contact_sheet.png'}


def test_visualize_pe_tool_on_checkpoint_and_config(tmp_path):
    """A lape checkpoint (its join inferred from the weights) against the add config of the demo."""
    model = LaPEViT(**tiny_vit_kwargs())
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in model.state_dict().items()}}, tmp_path / 'lape.pth')
    add_config = str(ROOT / 'configs/upernet_lape_vit_t_tiny-ade_128x128_add.py')
    out = tmp_path / 'figs'
    run_main('tools/visualize_pe.py', str(tmp_path / 'lape.pth'), add_config, '--out', str(out))
    names = {p.name for p in out.iterdir()}
    stem = 'upernet_lape_vit_t_tiny-ade_128x128_add'
    assert names == {'lape_token_similarity.png', 'lape_layer_similarity.png', f'{stem}_token_similarity.png',
                     f'{stem}_layer_similarity.png', 'contact_sheet.png'}


# ---------------------------------------------------------------- memory, FLOPs
def test_cpu_peak_memory_follows_allocations():
    def fn():
        a = torch.ones(2 ** 20)  # 4 MiB
        b = a * 2  # 8 MiB live
        del a
        return b + 1  # 8 MiB live again: peak stays 8 MiB
    assert 8 * 2 ** 20 <= peak_memory(fn, torch.device('cpu')) < 8 * 2 ** 20 + 1024  # + scalar temporaries


def test_fused_attention_is_counted_like_mmseg_explicit_attention():
    from mmseg.models.backbones import VisionTransformer
    ours = LaPEViT(**tiny_vit_kwargs(pe_join='add')).eval()
    theirs = VisionTransformer(img_size=64, embed_dims=64, num_layers=3, num_heads=4, out_indices=-1,
                               final_norm=True)
    theirs.eval()  # mmseg's train() returns None
    images = (torch.randn(1, 3, 64, 64),)
    # mmseg counts its (unfused) softmax(q k^T) v as bmm ops; the PE add and scale are not counted.
    assert flop_analyzer(ours, images).total() == flop_analyzer(theirs, images).total()


def test_get_flops_tool():
    output = run_main('tools/get_flops.py', TINY_UPERNET, '--shape', '128', '128')
    lines = {line.split()[0]: line.split()[1:] for line in output.splitlines() if line[:1].isalpha()}
    total, backbone = float(lines['total'][0]), float(lines['backbone'][0])
    assert 0 < backbone < total and float(lines['total'][1]) > 0


# ---------------------------------------------------------------- benchmark (the tool, not timings)
def test_benchmark_tool_writes_table_chart_and_ratios(tmp_path):
    output = run_main('tools/benchmark.py', '--arch', 'tiny', '--depth', '2', '--size', '32', '48', '--repeats', '2',
                      '--threads', '1', '--amp', '--with-cp', '--kernel-bound', '--matmul-size', '128',
                      '--out', str(tmp_path))
    assert 'lape / mmseg: time' in output and 'with_cp=True cuts activation memory' in output
    assert output.count('so no implementation exceeds') == 4  # kernel bound per precision x mode
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    assert [(b['precision'], b['mode']) for b in data['kernel_bounds']] == [
        ('fp32', 'infer'), ('fp32', 'train'), ('bfloat16', 'infer'), ('bfloat16', 'train')]
    assert all(0 < b['linear_seconds'] and 0 < b['attention_seconds'] for b in data['kernel_bounds'])
    models = ['lape', 'add', 'timm', 'mmseg', 'lape-cp']
    assert list(data['models']) == models
    assert len(data['rows']) == len(models) * 2 * 2  # x precision x mode
    for row in data['rows']:
        assert len(row['seconds']) == 2 and row['peak_bytes'] > 0 and row['finite']
        assert (row['activation_bytes'] is not None) == (row['mode'] == 'train')
        if row['precision'] == 'bfloat16' and row['mode'] == 'infer':
            assert row['rel_error'] < 0.05
    table = (tmp_path / 'benchmark.md').read_text()
    assert table.count('\n| ') == 1 + len(data['rows'])  # header + rows
    assert markdown(BenchmarkResult.from_dict(data), data['command']) == table  # --from-json re-renders it
    assert (tmp_path / 'benchmark.png').read_bytes()[:4] == b'\x89PNG'


def test_benchmark_segmentors_run_and_refuse_compile(tmp_path):
    upernets = {'upernet-lape': TINY_UPERNET, 'upernet-add': TINY_UPERNET.replace('.py', '_add.py')}
    result = run_benchmark(BenchmarkSettings(segmentors=upernets, depth=4, size=(64, 64), repeats=1, warmup=0,
                                             threads=1, matmul_size=64), **QUIET)
    assert list(result.models) == list(upernets) and len(result.rows) == 4
    assert all(r.activation_bytes for r in result.rows if r.mode == 'train')
    write_report(result, tmp_path)
    with pytest.raises(ValueError, match='--compile applies to backbones only'):
        run_benchmark(BenchmarkSettings(segmentors=upernets, compile=True), **QUIET)


def test_benchmark_runs_rope_beside_lape_and_add():
    """The RoPE backbones (alone, axial and mixed, and beside lape) in the benchmark, fp32 and bf16."""
    models = ('lape', 'add', 'rope', 'rope-mixed', 'lape-rope')
    result = run_benchmark(BenchmarkSettings(models=models, arch='tiny', depth=2, size=(32, 48), repeats=1, warmup=0,
                                             threads=1, amp='bfloat16', matmul_size=64), **QUIET)
    assert list(result.models) == list(models) and len(result.rows) == len(models) * 2 * 2
    assert all(row.finite for row in result.rows)
    assert any(line.startswith('train fp32: lape / rope: time') for line in ratio_lines(result))


def test_ratio_lines_name_every_comparison():
    result = run_benchmark(BenchmarkSettings(models=('lape', 'timm'), arch='tiny', depth=1, size=(32, 32), repeats=1,
                                             warmup=0, threads=1, matmul_size=64), **QUIET)
    lines = ratio_lines(result)
    assert lines[0].startswith('train fp32: lape / timm: time')
    assert any('of the' in line and 'matmul peak' in line for line in lines)


# ---------------------------------------------------------------- ONNX
@pytest.mark.parametrize('kwargs', [dict(pe_join='lape'), dict(pe_join='add'),
                                    dict(with_cls_token=False, window_size=3, global_attn_indexes=(1,))],
                         ids=['lape', 'add', 'window'])
def test_onnx_backbone_matches_pytorch_at_two_sizes(tmp_path, kwargs):
    model = LaPEViT(**tiny_vit_kwargs(num_layers=2, out_indices=(0, 1), img_size=48, **kwargs)).eval()
    randomize_norms(model)
    with torch.no_grad():
        model(torch.randn(1, 3, 48, 48))  # an eval call first: export must not bake in any state it leaves
    path = tmp_path / 'backbone.onnx'
    export_onnx(model, path, (48, 48))  # a 3x3 grid: whole windows, no padding
    for shape in [(1, 3, 48, 48), (2, 3, 64, 112)]:  # the PE grid; a resized, non-square, padded one
        assert onnx_max_error(path, model, shape) < 1e-4


def test_onnx_segmentor_matches_pytorch_at_two_sizes(tmp_path):
    """UPerNet's pyramid pooling needs the shape-generic adaptive pooling translation."""
    cfg = load_config(TINY_UPERNET, {'model.backbone.num_layers': 4, 'model.backbone.out_indices': [0, 1, 2, 3]})
    model = TensorForward(build_model(cfg)).eval()
    path = tmp_path / 'upernet.onnx'
    export_onnx(model, path, (64, 64))
    for shape in [(1, 3, 64, 64), (1, 3, 128, 80)]:
        assert onnx_max_error(path, model, shape) < 1e-4


def test_export_onnx_tool_backbone_only(tmp_path):
    model = LaPEViT(**tiny_vit_kwargs(arch='tiny', num_layers=12, embed_dims=192, num_heads=3, img_size=128))
    torch.save({'model': model.state_dict()}, tmp_path / 'deit_style.pth')  # the authors' layout
    output = run_main('tools/export_onnx.py', TINY_UPERNET, str(tmp_path / 'deit_style.pth'), '--backbone-only',
                      '--out', str(tmp_path / 'bb.onnx'), '--check', '96', '160')
    assert 'at 1x3x128x128' in output and 'at 1x3x96x160' in output
