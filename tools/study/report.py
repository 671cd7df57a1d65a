"""The study's tables (markdown) and figures (accuracy per setting, per-layer PE similarity)."""
from __future__ import annotations

from pathlib import Path

from .stats import paired_difference, summarize
from .study import BUDGET_CHECK, COMPARISONS, SETTINGS, Setting, StudyConfig, TaskResults


def _pm(values: list[float]) -> str:
    s = summarize(values)
    return f'{s.mean:.2f} ± {s.std:.2f}'


def _verdict(mean: float, within_noise: bool) -> str:
    if within_noise:
        return 'within noise'
    return 'a better' if mean > 0 else 'a worse'


def accuracy_table(results: TaskResults) -> str:
    """One row per setting: mean ± std over seeds, and the seeds' values."""
    rows = ['| setting | top-1 % (mean ± std) | per seed |', '|---|---|---|']
    for setting in SETTINGS:
        values = results.accuracy[setting.name]
        rows.append(f'| {setting.name} | {_pm(values)} | ' + ', '.join(f'{v:.2f}' for v in values) + ' |')
    return '\n'.join(rows)


def comparison_table(results: TaskResults) -> str:
    """Paired differences ``a - b`` (same seeds), their 95% interval, and whether it excludes zero."""
    rows = ['| a − b | Δ top-1 (mean ± std) | 95% CI of Δ | verdict |', '|---|---|---|---|']
    for a, b in COMPARISONS:
        d = paired_difference(results.accuracy[a.name], results.accuracy[b.name])
        interval = f'[{d.mean - d.half_width:+.2f}, {d.mean + d.half_width:+.2f}]'
        rows.append(f'| {a.name} − {b.name} | {d.mean:+.2f} ± {d.std:.2f} | {interval} | '
                    f'{_verdict(d.mean, d.within_noise)} |')
    return '\n'.join(rows)


def pe_type_table(results: TaskResults) -> str:
    """add vs lape across PE types: LaPE's claim is that accuracy depends less on the PE type."""
    rows = ['| join | learnable | sincos_2d | no PE | learnable − sincos_2d |', '|---|---|---|---|---|']
    none = results.accuracy[Setting('add', 'none').name]
    for join in ('add', 'lape'):
        learnable = results.accuracy[Setting(join, 'learnable').name]
        sincos = results.accuracy[Setting(join, 'sincos_2d').name]
        spread = summarize(learnable).mean - summarize(sincos).mean
        rows.append(f'| {join} | {_pm(learnable)} | {_pm(sincos)} | {_pm(none)} | {spread:+.2f} |')
    return '\n'.join(rows)


def budget_table(results: TaskResults, config: StudyConfig, task: str) -> str:
    epochs = config.recipes[task].epochs
    rows = [f'| setting (seed {config.seeds[0]}) | {epochs} epochs | {epochs * config.budget_factor} epochs |',
            '|---|---|---|']
    for setting in BUDGET_CHECK:
        rows.append(f'| {setting.name} | {results.accuracy[setting.name][0]:.2f} | '
                    f'{results.budget[setting.name]:.2f} |')
    return '\n'.join(rows)


def markdown_report(results: dict[str, TaskResults], config: StudyConfig) -> str:
    parts = []
    for task, task_results in results.items():
        recipe = config.recipes[task]
        parts += [f'### {task}: test top-1 over seeds {list(config.seeds)} ({recipe.epochs} epochs)', '',
                  accuracy_table(task_results), '',
                  f'Paired differences ({task}):', '', comparison_table(task_results), '',
                  f'PE types ({task}):', '', pe_type_table(task_results), '',
                  f'Budget check ({task}):', '', budget_table(task_results, config, task), '']
    return '\n'.join(parts)


def plot_accuracy(results: dict[str, TaskResults], path: Path) -> Path:
    """Bars (mean) with std error bars and one dot per seed, one panel per task."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.6), squeeze=False)
    names = [s.name for s in SETTINGS]
    for ax, (task, task_results) in zip(axes[0], results.items()):
        for i, name in enumerate(names):
            values = task_results.accuracy[name]
            s = summarize(values)
            ax.bar(i, s.mean, yerr=0 if s.n < 2 else s.std, color='tab:orange' if 'lape' in name else 'tab:blue',
                   alpha=0.7, capsize=3)
            ax.plot([i] * len(values), values, 'k.', markersize=4)
        ax.set_xticks(range(len(names)), names, rotation=45, ha='right', fontsize=7)
        ax.set_ylabel('test top-1 (%)')
        ax.set_title(task)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_pe_figures(results: dict[str, TaskResults], out_dir: Path) -> list[Path]:
    """Per-layer PE similarity of the add and LaPE models (learnable PE, first seed), per task."""
    from tools.analysis import layer_pos_embeds, pe_caption, save_figures
    written = []
    for task, task_results in results.items():
        inputs = {join: (layer_pos_embeds(model), model.patch_grid, pe_caption(model))
                  for join, model in task_results.models.items()}
        written += save_figures(inputs, out_dir / task)
    return written
