"""Fit a native (timm/DeiT/LaPE-authors layout) state dict to a :class:`LaPEViT`, and load it strictly.

This is LaPEViT's ``checkpoint_filter_fn`` (as in timm): it resizes the PE to the model's grid,
starts absent ``pe_norm`` layers as identity, checks fixed PE tables and drops what the model
leaves out by design. Reading files and renaming foreign keys is :mod:`lape_mm.checkpoint`'s job.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ...checkpoint import CheckpointError, StateDict, read_checkpoint
from ..layers import build_fixed_pos_embed, infer_grid, resize_pos_embed

HEAD_PREFIXES = ('head.', 'fc_norm.', 'head_drop.', 'head_dist.')


@dataclass
class FitReport:
    """What fitting did to a checkpoint, for the log and for strictness."""
    dropped: list[str] = field(default_factory=list)  # carried by the checkpoint, left out on purpose
    identity: list[str] = field(default_factory=list)  # pe_norm layers started as identity
    fresh: list[str] = field(default_factory=list)  # a subclass's own modules, not in a plain ViT


def checkpoint_pe_grid(pos_embed: torch.Tensor, model, saved_grid: tuple[int, int] | None) -> tuple[int, int]:
    """The grid of a checkpoint PE ``[L, 1 + N, C]``: the one saved with it, else the model's for the
    same number of slots, else a square one; anything else is refused."""
    num_patches = pos_embed.shape[1] - model.num_prefix_tokens
    if saved_grid is not None:
        if saved_grid[0] * saved_grid[1] != num_patches:
            raise CheckpointError(f'checkpoint pos_embed has {num_patches} patch slots, but its saved grid '
                                  f'{saved_grid} has {saved_grid[0] * saved_grid[1]}')
        return tuple(saved_grid)
    model_grid = model.patch_grid
    if num_patches == model_grid[0] * model_grid[1]:
        return model_grid
    try:
        return infer_grid(num_patches)
    except ValueError:
        raise CheckpointError(
            f'checkpoint pos_embed has {num_patches} patch slots and no saved grid: its height x width '
            f'cannot be inferred (the model grid is {model_grid}). Save the grid with the checkpoint '
            f'(tools/convert_checkpoint.py --img-size H W writes it) or convert it at the model grid.') from None


def fit_pos_embed(pos_embed: torch.Tensor, model, saved_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize a checkpoint PE ``[1|L, 1 + h*w, C]`` to the model's grid and number of copies."""
    old_grid = checkpoint_pe_grid(pos_embed, model, saved_grid)
    pos_embed = resize_pos_embed(pos_embed, model.patch_grid, old_grid, model.num_prefix_tokens)
    copies = model.pos_embed.shape[0]
    if pos_embed.shape[0] == 1 and copies > 1:  # one shared PE seeds every per-block copy ('unshare')
        pos_embed = pos_embed.expand(copies, -1, -1).clone()
    return pos_embed


def _check_fixed_pos_embed(pos_embed: torch.Tensor, model, saved_grid: tuple[int, int] | None) -> None:
    """A fixed table in a checkpoint must be the model's own definition (at the checkpoint's grid)."""
    grid = checkpoint_pe_grid(pos_embed, model, saved_grid)
    expected = build_fixed_pos_embed(model.pe_type, grid, model.embed_dims)
    if pos_embed.shape != expected.shape or not torch.allclose(pos_embed.float(), expected, atol=1e-4):
        diff = (pos_embed.float() - expected).abs().max().item() if pos_embed.shape == expected.shape else 'shape'
        raise CheckpointError(
            f"the checkpoint's pos_embed is not the {model.pe_type} table the model uses (max difference "
            f'{diff}): it was trained with another PE. Set pe_type to match the checkpoint '
            f"(e.g. 'learnable'), or load with strict=False to ignore its PE.")


def fit_state_dict(state_dict: StateDict, model, keep_head: bool = False,
                   saved_grid: tuple[int, int] | None = None) -> tuple[StateDict, FitReport]:
    """Fit a native state dict to ``model``: PE grid and copies, identity ``pe_norm``, no
    classifier head (unless ``keep_head``), and nothing the configuration leaves out on purpose."""
    state_dict, report = dict(state_dict), FitReport()
    own = model.state_dict()
    left_out = [] if keep_head else list(HEAD_PREFIXES)
    if model.cls_token is None:
        left_out.append('cls_token')
    if not model.final_norm:
        left_out.append('norm.')
    if model.pos_embed is None:
        left_out.append('pos_embed')
    for key in [k for k in state_dict if k.startswith(tuple(left_out)) and k not in own]:
        report.dropped.append(key)
        del state_dict[key]
    pe = state_dict.get('pos_embed')
    if isinstance(model.pos_embed, nn.Parameter):
        if pe is not None:
            state_dict['pos_embed'] = fit_pos_embed(pe, model, saved_grid)
    elif model.pos_embed is not None:  # a fixed table: the model's own, after checking the file's
        if pe is not None:
            _check_fixed_pos_embed(pe, model, saved_grid)
        state_dict['pos_embed'] = own['pos_embed']
    for name in sorted({k.rsplit('.', 1)[0] for k in own if '.pe_norm.' in k and k not in state_dict}):
        state_dict[f'{name}.weight'] = torch.ones_like(own[f'{name}.weight'])
        state_dict[f'{name}.bias'] = torch.zeros_like(own[f'{name}.bias'])
        report.identity.append(name)
    extra = tuple(model.extra_prefixes)
    if extra and not any(k.startswith(extra) for k in state_dict):  # a plain ViT under a subclass
        report.fresh = [k for k in own if k.startswith(extra)]
        state_dict.update({k: own[k] for k in report.fresh})
    return state_dict, report


def check_state_dict(model: nn.Module, state_dict: StateDict, source: str = 'checkpoint',
                     strict: bool = True) -> None:
    """Raise a CheckpointError naming shape mismatches, and with ``strict`` missing and unexpected
    keys; without ``strict`` those are logged as warnings."""
    own = model.state_dict()
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise CheckpointError(f'{source} does not fit the model ({len(mismatched)} shape mismatches):\n  '
                              + '\n  '.join(mismatched[:10])
                              + '\nCheck arch / embed_dims / num_layers / patch_size against the checkpoint.')
    missing = sorted(own.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - own.keys())
    if strict and (missing or unexpected):
        raise CheckpointError(
            f'{source} does not match the model: {len(missing)} tensors the model needs are missing '
            f'{_short(missing)} and {len(unexpected)} have no place in it {_short(unexpected)}. '
            'Check the config against the checkpoint; to load what fits on purpose, set strict=False '
            "(init_cfg=dict(type='Pretrained', checkpoint=..., strict=False)).")
    for what, keys in (('missing (left at their initial values)', missing), ('unexpected (ignored)', unexpected)):
        if keys:
            print_log(f'{source}: {what}: {keys}', logger='current', level=30)


def load_fitted(model: nn.Module, state_dict: StateDict, source: str = 'checkpoint', strict: bool = True) -> None:
    """:func:`check_state_dict`, then ``load_state_dict``."""
    check_state_dict(model, state_dict, source, strict)
    model.load_state_dict(state_dict, strict=False)


def _short(keys: list[str], limit: int = 8) -> str:
    return '[' + ', '.join(map(repr, keys[:limit])) + (f', ... {len(keys) - limit} more' if len(keys) > limit else '') + ']'


def log_fit_report(report: FitReport, source: str) -> None:
    if report.dropped:
        print_log(f'{source}: not loaded, as the configuration leaves them out: {report.dropped}', logger='current')
    if report.identity:
        print_log(f'{source}: {len(report.identity)} pe_norm layers are not in the checkpoint (a plain ViT): '
                  'initialised to identity (weight 1, bias 0)', logger='current')
    if report.fresh:
        print_log(f'{source}: a plain ViT checkpoint: {len(report.fresh)} tensors of the modules added on '
                  'top of it start fresh', logger='current')


def load_pretrained(model, path: str, prefix: str | None = None, keep_head: bool = False,
                    strict: bool = True) -> str:
    """Load a timm/DeiT, LaPE-authors, mmseg, mmpretrain or lape_mm checkpoint into ``model``.

    Strict by default: a tensor the model needs that the file lacks, or one the file carries
    that the model has no place for, is a :class:`CheckpointError` naming the keys. Returns the
    detected format.
    """
    state_dict, fmt, saved_grid = read_checkpoint(path, prefix)
    source = f'{path} ({fmt} format)'
    fitted, report = fit_state_dict(state_dict, model, keep_head, saved_grid)
    load_fitted(model, fitted, source, strict)
    log_fit_report(report, source)
    print_log(f'loaded {fmt} checkpoint {path}', logger='current')
    return fmt
