"""Checks of the values a model is built from, so that a wrong one fails at construction, by name (a
:class:`~lape_mm.errors.ConfigError` saying what is allowed) rather than deep inside the model."""
from __future__ import annotations

from numbers import Real
from typing import Mapping, Sequence

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


def check_positive(name: str, value) -> float:
    """``value`` if it is a number > 0 (e.g. ``mlp_ratio``: 0 would build blocks with empty MLPs)."""
    if not isinstance(value, Real) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f'{name} must be a number > 0, got {value!r}')
    return float(value)


def check_divisor(name: str, value: int, of_name: str, of: int) -> int:
    """``value`` if it divides ``of`` (e.g. ``num_heads`` of ``embed_dims``), naming the nearest divisors."""
    if of % value:
        nearest = sorted(sorted((d for d in range(1, of + 1) if of % d == 0), key=lambda d: abs(d - value))[:4])
        raise ConfigError(f'{name}={value} does not divide {of_name}={of}; choose a divisor of {of}, '
                          f'e.g. {", ".join(map(str, nearest))}')
    return value


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


def check_neck_inputs(model: Mapping) -> None:
    """A LaPEViT gives one map per ``out_indices`` entry; a neck with a list of ``in_channels`` (mmseg's
    MultiLevelNeck and FPN, mmdet's FPN and ChannelMapper) takes one map per entry: the counts must
    match, or the neck fails on its first batch with a bare AssertionError."""
    backbone, neck = model.get('backbone'), model.get('neck')
    if not (isinstance(backbone, Mapping) and isinstance(neck, Mapping)):
        return
    in_channels, out_indices = neck.get('in_channels'), backbone.get('out_indices', -1)
    if str(backbone.get('type')).split('.')[-1] != 'LaPEViT' or not isinstance(in_channels, Sequence):
        return
    outputs = 1 if _is_int(out_indices) else len(out_indices)
    if outputs != len(in_channels):
        raise ConfigError(f'model.backbone.out_indices={out_indices!r} gives {outputs} feature map(s), but model.neck '
                          f'({neck.get("type")}) takes {len(in_channels)} (in_channels={list(in_channels)}): give as '
                          f'many out_indices as neck.in_channels entries')
