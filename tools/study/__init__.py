"""A CPU-sized LaPE-vs-add study (docs/reproduction.md): tasks, training loop, statistics, report.

``reproduce(out)`` runs it all and writes the tables and figures; ``tools/reproduce.py`` is its CLI.
"""
from .study import FULL, QUICK, SETTINGS, Setting, StudyConfig, run_study
from .reproduce import reproduce

__all__ = ['FULL', 'QUICK', 'SETTINGS', 'Setting', 'StudyConfig', 'reproduce', 'run_study']
