"""The deep study's tables (markdown), its accuracy-vs-resolution figure and its per-layer PE figure."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from .deep import (DEEP_FULL, FIGURE_MODELS, FINETUNE, FINETUNE_COMPARISONS, PRETRAIN, SCRATCH,
                   SCRATCH_COMPARISONS, DeepConfig, DeepSetting, DeepStudy, Job, jobs)
from .report import _pm, _verdict
from .stats import paired_difference, summarize

Runs = dict[str, dict]


def _values(runs: Runs, config: DeepConfig, group: str, setting: DeepSetting, key: str, size=None) -> list[float]:
    """One value per seed: ``result[key][size]`` (or ``result[key]``) of each seed's run."""
    seeds = config.seeds[:1] if group == 'pretrain' else config.seeds  # one checkpoint of each
    results = [runs[Job(group, setting, seed).name][key] for seed in seeds]
    return [r[str(size)] for r in results] if size is not None else results


def _columns(config: DeepConfig, group: str) -> list[tuple[str, str, int]]:
    """(heading, result key, size) per column of a group's tables."""
    sizes = (config.img_size,) if group == 'pretrain' else config.test_sizes
    columns = [(f'{size}px' + (' (trained)' if size == config.img_size else ''), 'accuracy', size) for size in sizes]
    if group == 'scratch':
        columns += [(f'{size}px after {config.finetune_size}px fine-tune', 'accuracy_after_finetune', size)
                    for size in config.test_sizes if size >= config.finetune_size]
    return columns


def accuracy_table(runs: Runs, config: DeepConfig, group: str, settings: tuple[DeepSetting, ...]) -> str:
    """Test top-1 (mean ± std over seeds) per setting and test size."""
    columns = _columns(config, group)
    extra = ['start on pretrain task'] if group == 'finetune' else []
    pm = (lambda values: f'{values[0]:.2f}') if group == 'pretrain' else _pm
    rows = ['| setting | ' + ' | '.join(extra + [c[0] for c in columns]) + ' |',
            '|---|' + '---|' * (len(columns) + len(extra))]
    for s in settings:
        cells = [pm(_values(runs, config, group, s, 'start_accuracy_on_pretrain_task'))] if extra else []
        cells += [pm(_values(runs, config, group, s, key, size)) for _, key, size in columns]
        rows.append(f'| {s.label} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(rows)


def comparison_table(runs: Runs, config: DeepConfig, group: str, pairs) -> str:
    """Paired differences a - b per test size: mean, 95% Student-t interval, verdict."""
    columns = _columns(config, group)
    rows = ['| a − b | ' + ' | '.join(c[0] for c in columns) + ' |', '|---|' + '---|' * len(columns)]
    for a, b in pairs:
        cells = []
        for _, key, size in columns:
            d = paired_difference(*(_values(runs, config, group, s, key, size) for s in (a, b)))
            cells.append(f'{d.mean:+.2f} [{d.mean - d.half_width:+.2f}, {d.mean + d.half_width:+.2f}] '
                         f'{_verdict(d.mean, d.within_noise)}')
        rows.append(f'| {a.label} − {b.label} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(rows)


def per_seed_table(runs: Runs, config: DeepConfig) -> str:
    """Every run's numbers, for readers who pair them differently."""
    rows = ['| run | seed | top-1 % per test size | after fine-tune | start on pretrain task | seconds |',
            '|---|---|---|---|---|---|']
    def sizes(values: dict | None) -> str:
        return ', '.join(f'{size}px {value:.2f}' for size, value in (values or {}).items())

    for job in jobs(config):
        r = runs[job.name]
        start = r.get('start_accuracy_on_pretrain_task')
        rows.append(f'| {job.group} / {job.setting.label} | {job.seed} | {sizes(r["accuracy"])} | '
                    f'{sizes(r.get("accuracy_after_finetune"))} | {"" if start is None else f"{start:.2f}"} | '
                    f'{r["seconds"]} |')
    return '\n'.join(rows)


def markdown_report(runs: Runs, config: DeepConfig) -> str:
    seeds = list(config.seeds)
    return '\n'.join([
        f'### Pretraining ({config.pretrain_task}, {config.pretrain_epochs} epochs, seed {seeds[0]}): test top-1',
        '', accuracy_table(runs, config, 'pretrain', PRETRAIN), '',
        f'### From scratch ({config.task}, {config.recipe.epochs} epochs at {config.img_size}px): test top-1',
        '', accuracy_table(runs, config, 'scratch', SCRATCH), '',
        'Paired differences (from scratch):', '', comparison_table(runs, config, 'scratch', SCRATCH_COMPARISONS), '',
        f'### Fine-tuned from a plain checkpoint ({config.task}, {config.finetune.epochs} epochs at '
        f'{config.img_size}px): test top-1', '', accuracy_table(runs, config, 'finetune', FINETUNE), '',
        'Paired differences (fine-tuned):', '', comparison_table(runs, config, 'finetune', FINETUNE_COMPARISONS), '',
        '### Every run', '', per_seed_table(runs, config), ''])


def plot_resolution(runs: Runs, config: DeepConfig, path: Path) -> Path:
    """Accuracy vs test size per method (mean, std bars): from scratch (dashed: after the fine-tune at the
    larger size) and fine-tuned from a checkpoint."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = ((axes[0], 'scratch', SCRATCH, 'from scratch (dashed: after fine-tune at '
               f'{config.finetune_size}px)'), (axes[1], 'finetune', FINETUNE, 'fine-tuned from a plain checkpoint'))
    for ax, group, settings, title in panels:
        for i, s in enumerate(settings):
            colour = f'C{i}'
            for key, sizes, style in (('accuracy', config.test_sizes, '-o'), ('accuracy_after_finetune', tuple(
                    size for size in config.test_sizes if size >= config.finetune_size), '--s')):
                if group != 'scratch' and key != 'accuracy':
                    continue
                stats = [summarize(_values(runs, config, group, s, key, size)) for size in sizes]
                ax.errorbar([size + 0.4 * (i - len(settings) / 2) for size in sizes], [m.mean for m in stats],
                            yerr=[0 if m.n < 2 else m.std for m in stats], fmt=style, color=colour, capsize=3,
                            markersize=4, label=s.label if key == 'accuracy' else None)
        ax.axvline(config.img_size, color='grey', lw=0.5)
        ax.set_xticks(config.test_sizes, [f'{size}px' for size in config.test_sizes])
        ax.set_xlabel(f'test size (trained at {config.img_size}px)')
        ax.set_ylabel('test top-1 (%)')
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_pe_figures(study: DeepStudy, out_dir: Path) -> list[Path]:
    """Per-layer PE similarity of the seed-0 scratch models of FIGURE_MODELS (the paper's figure)."""
    from tools.analysis import layer_pos_embeds, pe_caption, save_figures
    inputs = {}
    for setting in FIGURE_MODELS:
        model = study.figure_model(setting)
        inputs[setting.label] = layer_pos_embeds(model), model.patch_grid, pe_caption(model)
    return save_figures(inputs, out_dir)


def reproduce_deep(out: str | Path, config: DeepConfig = DEEP_FULL, progress: bool = True) -> str:
    """Run (or resume from ``out``/cache) the deep study; write ``results.md``, ``results.json`` and the
    figures to ``out``. Returns the markdown report."""
    out = Path(out)
    start = time.perf_counter()
    study = DeepStudy(config, out / 'cache')
    runs = study.run(progress)
    report = markdown_report(runs, config)
    plot_resolution(runs, config, out / 'accuracy_vs_resolution.png')
    save_pe_figures(study, out / 'pe_similarity')
    compute = sum(r['seconds'] for r in runs.values()) / 60
    report += (f'\nThis call: {(time.perf_counter() - start) / 60:.1f} min; training and testing of all '
               f'{len(runs)} runs: {compute:.1f} min.\n')
    (out / 'results.md').write_text(report)
    (out / 'results.json').write_text(json.dumps({'config': asdict(config), 'runs': runs}, indent=1))
    return report
