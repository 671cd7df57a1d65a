"""Code the entry points in tools/ share: CLI glue, benchmarks and analysis, the study, tiny data sets.

Not installed: ``lape_mm`` is the plugin; this runs from a checkout (scripts put the repo root on sys.path).
"""
