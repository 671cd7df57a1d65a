"""Run the study and write its tables and figures: the body of tools/reproduce.py."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from .report import markdown_report, plot_accuracy, save_pe_figures
from .study import FULL, StudyConfig, run_study


def reproduce(out: str | Path, config: StudyConfig = FULL, progress: bool = True) -> str:
    """Train everything from scratch; write ``results.md``, ``results.json`` and the PNGs to ``out``.

    Returns the markdown report (also what tools/reproduce.py prints).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = run_study(config, progress)
    report = markdown_report(results, config)
    plot_accuracy(results, out / 'accuracy.png')
    save_pe_figures(results, out)
    minutes = (time.perf_counter() - start) / 60
    report += f'\nTotal time: {minutes:.1f} min.\n'
    (out / 'results.md').write_text(report)
    raw = {task: {'accuracy': r.accuracy, 'budget': r.budget} for task, r in results.items()}
    (out / 'results.json').write_text(json.dumps({'config': asdict(config), 'results': raw}, indent=1))
    return report
