"""Checks of the values a model is built from, so that a wrong one fails at construction, by name (a
:class:`~lape_mm.errors.ConfigError` saying what is allowed) rather than deep inside the model."""
from __future__ import annotations

from numbers import Real
from typing import Sequence

from timm.models._features import feature_take_indices

from ..errors import ConfigError


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value, low: int = 1) -> int:
    """``value`` if it is an int >= ``low``."""
    if not _is_int(value) or value < low:
        raise ConfigError(f'{name} must be an integer >= {low}, got {value!r}')
    return value


def check_choice(name: str, value, allowed: Sequence) -> None:
    """``value`` must be one of ``allowed`` (a mode name such as ``pe_join``)."""
    if value not in allowed:
        raise ConfigError(f'unknown {name}={value!r}; choose one of {", ".join(map(repr, allowed))}')


def check_fraction(name: str, value, high: float = 1.) -> float:
    """``value`` if it is a number in ``[0, high)``."""
    if not isinstance(value, Real) or isinstance(value, bool) or not 0 <= value < high:
        raise ConfigError(f'{name} must be a number in [0, {high:g}), got {value!r}')
    return float(value)


def check_size(name: str, value) -> tuple[int, int]:
    """An int ``S`` (for ``(S, S)``) or an ``(H, W)`` pair of positive ints, as a pair."""
    pair = (value, value) if _is_int(value) else tuple(value) if isinstance(value, Sequence) else ()
    if len(pair) != 2 or not all(_is_int(v) and v > 0 for v in pair):
        raise ConfigError(f'{name} must be a positive int or an (H, W) pair of them, got {value!r}')
    return pair


def check_indices(name: str, value, length: int) -> tuple[int, ...]:
    """Block indices (an int or a sequence; negative ones count from the end, as timm's
    ``feature_take_indices`` reads them), distinct and in increasing block order, as non-negative ints:
    the outputs come back in that order."""
    indices = [value] if _is_int(value) else list(value) if isinstance(value, Sequence) and not isinstance(
        value, str) else None
    if not indices or not all(_is_int(i) for i in indices):
        raise ConfigError(f'{name} must be a block index or a sequence of them, got {value!r}')
    try:
        absolute, _ = feature_take_indices(length, indices)
    except AssertionError as err:  # timm's check of the range
        raise ConfigError(f'{name}={indices}: {err} ({length} blocks; negative indices count from the end)') from None
    if any(a >= b for a, b in zip(absolute, absolute[1:])):
        raise ConfigError(f'{name}={indices} must name distinct blocks in increasing order (outputs come '
                          f'in block order), e.g. {sorted(set(absolute))}')
    return tuple(absolute)
