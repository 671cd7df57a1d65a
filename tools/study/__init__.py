"""CPU-sized LaPE studies (docs/reproduction.md): tasks, training loop, statistics, reports.

``reproduce(out)`` runs the study of PE joins and types, ``reproduce_deep(out)`` the deeper one (LaPE
against RoPE, plain-checkpoint starts, test resolutions); ``tools/reproduce.py`` is their CLI.
"""
from .study import FULL, QUICK, SETTINGS, Setting, StudyConfig, run_study
from .reproduce import reproduce
from .deep import DEEP_FULL, DEEP_QUICK, DeepConfig, DeepStudy
from .deep_report import reproduce_deep

__all__ = ['DEEP_FULL', 'DEEP_QUICK', 'FULL', 'QUICK', 'SETTINGS', 'DeepConfig', 'DeepStudy', 'Setting',
           'StudyConfig', 'reproduce', 'reproduce_deep', 'run_study']
