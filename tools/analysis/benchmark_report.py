"""A benchmark result as text: the ratios, a markdown table, a PNG bar chart and the raw JSON."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from .benchmark import BenchmarkResult, Row

# Training FLOPs ~ 3x forward (backward computes gradients of inputs and of weights).
PASSES = {'infer': 1, 'train': 3}


def achieved_gflops(result: BenchmarkResult, row: Row, seconds: float | None = None) -> float:
    """2 FLOPs per multiply-add of the forward pass, times the passes of the mode, per second
    (of the median run unless ``seconds`` is given)."""
    return 2 * result.models[row.model].macs * PASSES[row.mode] / (seconds or row.median) / 1e9


def paired_ratio(a: Row, b: Row) -> float:
    """The median over repeats of ``a``'s time over ``b``'s in the same repeat. Runs of one repeat
    are seconds apart, so load that drifts over minutes cancels in each pair."""
    return statistics.median(x / y for x, y in zip(a.seconds, b.seconds))


def time_ratio(a: Row, b: Row) -> str:
    """``a``'s time over ``b``'s: paired (see :func:`paired_ratio`), of the medians, and of the
    fastest runs (least disturbed by other processes on a shared machine)."""
    return (f'{paired_ratio(a, b):.3f}x (medians {a.median / b.median:.3f}x, '
            f'fastest runs {a.fastest / b.fastest:.3f}x)')


def ratio_lines(result: BenchmarkResult) -> list[str]:
    """Time and peak memory of the first model relative to each other eager model, autocast and
    compile speed-ups, the with_cp activation saving, and the first model's share of the matmul peak."""
    names = list(result.models)
    reference, eager = names[0], [n for n in names[1:] if not n.endswith('+compile')]
    precisions = list(result.matmul_gflops)
    lines = []
    for precision in precisions:
        for mode in ('train', 'infer'):
            ref = result.row(reference, precision, mode)
            for name in eager:
                other = result.row(name, precision, mode)
                lines.append(f'{mode} {precision}: {reference} / {name}: time {time_ratio(ref, other)}, '
                             f'peak memory {ref.peak_bytes / max(other.peak_bytes, 1):.3f}x')
    for amp in precisions[1:]:
        for name in names:
            for mode in ('train', 'infer'):
                full, low = result.row(name, 'fp32', mode), result.row(name, amp, mode)
                error = f', max rel. output error {low.rel_error:.1e}' if low.rel_error is not None else ''
                lines.append(f'{mode} {name}: {amp} autocast speed-up (fp32 / {amp} time) '
                             f'{time_ratio(full, low)}{error}, all finite: {low.finite}')
    for name in names:
        if name.endswith('+compile'):
            base = name[:-len('+compile')]
            lines += [f'{mode} {p}: torch.compile speed-up of {base} (eager / compiled time) '
                      f'{time_ratio(result.row(base, p, mode), result.row(name, p, mode))}'
                      for p in precisions for mode in ('train', 'infer')]
    if 'lape' in names and 'lape-cp' in names:
        for precision in precisions:
            plain, cp = (result.row(n, precision, 'train') for n in ('lape', 'lape-cp'))
            lines.append(f'train {precision}: with_cp=True cuts activation memory (forward peak) by '
                         f'{1 - cp.activation_bytes / plain.activation_bytes:.0%} '
                         f'({plain.activation_bytes / 2 ** 20:.0f} -> {cp.activation_bytes / 2 ** 20:.0f} MiB), '
                         f'step peak by {1 - cp.peak_bytes / plain.peak_bytes:.0%}')
    for precision, peak in result.matmul_gflops.items():
        for mode in ('train', 'infer'):
            row = result.row(reference, precision, mode)
            median, fastest = achieved_gflops(result, row), achieved_gflops(result, row, row.fastest)
            lines.append(f'{mode} {precision}: {reference} achieves {median:.0f} GFLOP/s = {median / peak:.0%} '
                         f'(fastest run {fastest:.0f} = {fastest / peak:.0%}) of the {peak:.0f} GFLOP/s matmul peak')
    return lines + kernel_bound_lines(result)


def kernel_bound_lines(result: BenchmarkResult) -> list[str]:
    """Each kernel bound (see ``kernel_bound.py``) as the highest share of the matmul peak that any
    implementation can reach, and how close the first model gets to it."""
    reference = next(iter(result.models))
    lines = []
    for bound in result.kernel_bounds:
        row = result.row(reference, bound.precision, bound.mode)
        ceiling = achieved_gflops(result, row, bound.seconds) / result.matmul_gflops[bound.precision]
        lines.append(f'{bound.mode} {bound.precision}: the GEMMs and attention alone take {bound.seconds * 1e3:.0f} ms '
                     f'(GEMMs {bound.linear_seconds * 1e3:.0f}, attention {bound.attention_seconds * 1e3:.0f}), '
                     f'so no implementation exceeds {ceiling:.0%} of the matmul peak here; {reference} takes '
                     f'{row.median / bound.seconds:.2f}x the bound')
    return lines


def markdown(result: BenchmarkResult, command: str = '') -> str:
    s = result.settings
    header = [
        f'Device: {result.device_name}; torch {result.torch_version}; 1-minute load average '
        f'{result.load_average[0]:.1f} at start, {result.load_average[1]:.1f} at end. Input '
        f'{s.batch}x3x{s.size[0]}x{s.size[1]}, median of {s.repeats} interleaved repeats after {s.warmup} warm-up.',
        f'Matmul peak (fastest of 5 {s.matmul_size}^2 matmuls): ' + ', '.join(
            f'{p} {g:.0f} GFLOP/s' for p, g in result.matmul_gflops.items()) + '.',
        'GMACs: multiply-adds of one forward pass (mmengine FlopAnalyzer, fused attention counted); '
        'GFLOP/s = 2 x MACs x (1 inference, 3 training) / time. Peak memory: tensor bytes above the '
        'weights (CUDA allocator peak / CPU profiler allocation trace); a training step\'s peak includes '
        'the parameter gradients; fwd act. = peak of its forward pass (the activations autograd keeps).',
    ]
    if command:
        header.insert(0, f'`{command}`')
    table = ['| model | params (M) | GMACs | precision | mode | median ms | min-max ms | peak MiB | fwd act. MiB '
             '| GFLOP/s | % matmul peak | rel. error vs fp32 |',
             '|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|']
    for row in result.rows:
        info = result.models[row.model]
        gflops = achieved_gflops(result, row)
        error = '' if row.rel_error is None else f'{row.rel_error:.1e}'
        if not row.finite:
            error += ' NON-FINITE'
        activations = '' if row.activation_bytes is None else f'{row.activation_bytes / 2 ** 20:.0f}'
        table.append(f'| {row.model} | {info.params / 1e6:.1f} | {info.macs / 1e9:.3g} | {row.precision} '
                     f'| {row.mode} | {row.median * 1e3:.0f} | {row.fastest * 1e3:.0f}-{max(row.seconds) * 1e3:.0f} '
                     f'| {row.peak_bytes / 2 ** 20:.0f} | {activations} | {gflops:.0f} '
                     f'| {gflops / result.matmul_gflops[row.precision]:.0%} | {error} |')
    ratios = ['Ratios:', '', *[f'- {line}' for line in ratio_lines(result)]]
    return '\n'.join(['\n\n'.join(header), '', *table, '', *ratios, ''])


def save_chart(result: BenchmarkResult, path: Path) -> None:
    """Median time and peak memory per model, one bar per (precision, mode)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = list(result.models)
    groups = [(p, m) for p in result.matmul_gflops for m in ('infer', 'train')]
    width = 0.8 / len(groups)
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(6 + 1.2 * len(names), 4))
    for i, (precision, mode) in enumerate(groups):
        rows = [result.row(n, precision, mode) for n in names]
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(names))]
        ax_time.bar(xs, [r.median * 1e3 for r in rows], width, label=f'{mode} {precision}')
        ax_mem.bar(xs, [r.peak_bytes / 2 ** 20 for r in rows], width, label=f'{mode} {precision}')
    for ax, label in ((ax_time, 'median time (ms)'), (ax_mem, 'peak memory (MiB)')):
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylabel(label)
        ax.grid(axis='y', alpha=0.3)
    ax_time.legend(fontsize=8)
    s = result.settings
    fig.suptitle(f'{result.device_name}: batch {s.batch}, {s.size[0]}x{s.size[1]}', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: BenchmarkResult, out_dir: str | Path, command: str = '') -> list[Path]:
    """``benchmark.md``, ``benchmark.png`` and ``benchmark.json`` (every repeat) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / 'benchmark.md', out_dir / 'benchmark.png', out_dir / 'benchmark.json']
    paths[0].write_text(markdown(result, command))
    save_chart(result, paths[1])
    paths[2].write_text(json.dumps({'command': command, **result.to_dict()}, indent=1))
    return paths
