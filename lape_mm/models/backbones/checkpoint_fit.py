"""LaPEViT's ``checkpoint_filter_fn`` (as in timm): fit a native state dict to the model and load it strictly.

The PE is resized to the model's grid, absent ``pe_norm`` layers start as identity and absent ``pe_gate``
gates at 0 (so 'add_lape' computes a plain ViT checkpoint's function), fixed PE tables are checked, and what
the model leaves out by design is dropped. Reading files and renaming foreign keys is
:mod:`lape_mm.checkpoint`'s job."""
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ...checkpoint import CheckpointError, StateDict, read_checkpoint
from ..layers import build_fixed_pos_embed, infer_grid, resize_pos_embed

HEAD_PREFIXES = ('head.', 'fc_norm.', 'head_drop.', 'head_dist.')
SHOWN_KEYS = 10
PRETRAINED_ADVICE = ('Check arch / embed_dims / num_layers / patch_size / pe_join against the checkpoint; to load '
                     "what fits on purpose, set strict=False (init_cfg=dict(type='Pretrained', checkpoint=..., "
                     'strict=False)).')


@dataclass
class FitReport:
    """What fitting did to a checkpoint, for the log."""
    dropped: list[str] = field(default_factory=list)  # carried by the checkpoint, left out on purpose
    identity: list[str] = field(default_factory=list)  # pe_norm layers started as identity
    closed: list[str] = field(default_factory=list)  # pe_gate gates started at 0
    fresh: list[str] = field(default_factory=list)  # a subclass's own modules, not in a plain ViT

    def log(self, source: str) -> None:
        for keys, what in ((self.dropped, 'not loaded, as the configuration leaves them out'),
                           (self.identity, 'pe_norm layers not in the checkpoint (a plain ViT) start as identity'),
                           (self.closed, "pe_gate gates not in the checkpoint start at 0: the model starts as the "
                                         "checkpoint's function"),
                           (self.fresh, 'tensors of the modules added on top of a plain ViT start fresh')):
            if keys:
                print_log(f'{source}: {_listing(what, keys)}', logger='current')


def pretrained_checkpoint(init_cfg) -> str | None:
    """The checkpoint of ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``, else None."""
    if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
        return str(init_cfg.get('checkpoint', ''))
    return None


def checkpoint_pe_grid(pos_embed: torch.Tensor, model, saved_grid: tuple[int, int] | None) -> tuple[int, int]:
    """The grid of a checkpoint PE ``[L, 1 + N, C]``: the saved one, else the model's if N fits, else square."""
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


def fit_pos_embed(pos_embed: torch.Tensor, model, grid: tuple[int, int]) -> torch.Tensor:
    """A learnable checkpoint PE ``[1|L, 1 + h*w, C]`` at the model's grid and copies; a fixed table must be
    the model's own (at the checkpoint's grid), and the model keeps its own."""
    if not isinstance(model.pos_embed, nn.Parameter):
        _check_fixed_pos_embed(pos_embed, model, grid)
        return model.pos_embed
    pos_embed = resize_pos_embed(pos_embed, model.patch_grid, grid, model.num_prefix_tokens)
    copies = model.pos_embed.shape[0]
    if pos_embed.shape[0] == 1 and copies > 1:  # one shared PE seeds every per-block copy ('unshare')
        pos_embed = pos_embed.expand(copies, -1, -1).clone()
    return pos_embed


def _check_fixed_pos_embed(pos_embed: torch.Tensor, model, grid: tuple[int, int]) -> None:
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
    state_dict, report, own = dict(state_dict), FitReport(), model.state_dict()
    absent = {'cls_token': model.cls_token is None, 'norm.': not model.final_norm, 'pos_embed': model.pos_embed is None}
    left_out = tuple(key for key, is_absent in absent.items() if is_absent) + (() if keep_head else HEAD_PREFIXES)
    for key in [k for k in state_dict if k.startswith(left_out) and k not in own]:
        report.dropped.append(key)
        del state_dict[key]
    pe = state_dict.get('pos_embed')
    if pe is not None and model.pos_embed is not None:
        state_dict['pos_embed'] = fit_pos_embed(pe, model, checkpoint_pe_grid(pe, model, saved_grid))
    elif model.pos_embed is not None and not isinstance(model.pos_embed, nn.Parameter):
        state_dict['pos_embed'] = own['pos_embed']  # a fixed table the file does not carry: the model's own
    for name in sorted({k.rsplit('.', 1)[0] for k in own if '.pe_norm.' in k and k not in state_dict}):
        state_dict[f'{name}.weight'] = torch.ones_like(own[f'{name}.weight'])
        state_dict[f'{name}.bias'] = torch.zeros_like(own[f'{name}.bias'])
        report.identity.append(name)
    for key in [k for k in own if k.endswith('.pe_gate.gamma') and k not in state_dict]:
        state_dict[key] = torch.zeros_like(own[key])
        report.closed.append(key)
    extra = tuple(model.extra_prefixes)
    if extra and not any(k.startswith(extra) for k in state_dict):  # a plain ViT under a subclass
        report.fresh = [k for k in own if k.startswith(extra)]
        state_dict.update({k: own[k] for k in report.fresh})
    if 'rope.freqs' in own:
        freqs = state_dict.get('rope.freqs')
        if freqs is None:  # a checkpoint without RoPE (or with fixed axial RoPE): fresh mixed frequencies
            state_dict['rope.freqs'] = own['rope.freqs']
            report.fresh.append('rope.freqs')
        elif freqs.numel() == own['rope.freqs'].numel():  # naver's [2, depth, heads * head_dim / 2]
            state_dict['rope.freqs'] = freqs.reshape(own['rope.freqs'].shape)
    return state_dict, report


def state_dict_diff(model: nn.Module, state_dict: dict) -> tuple[list[str], list[str], list[str]]:
    """The keys ``model`` needs that ``state_dict`` lacks, those it has no place for, and the shape mismatches."""
    own = model.state_dict()
    reshaped = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                for k, v in state_dict.items() if k in own and getattr(v, 'shape', None) != own[k].shape]
    return [k for k in own if k not in state_dict], [k for k in state_dict if k not in own], reshaped


def _listing(title: str, keys: list[str]) -> str:
    """``N title (per top-level module: count): the first keys``, e.g. ``neck: 16, decode_head: 60``."""
    per_module = ', '.join(f'{name}: {n}' for name, n in Counter(k.split(':')[0].split('.')[0] for k in keys).items())
    more = f', ... ({len(keys) - SHOWN_KEYS} more)' if len(keys) > SHOWN_KEYS else ''
    return f'{len(keys)} {title} ({per_module}): {", ".join(keys[:SHOWN_KEYS])}{more}'


def check_fits(model: nn.Module, state_dict: StateDict, source: str, advice: str, strict: bool = True) -> None:
    """The one check that a state dict fits ``model``: a :class:`CheckpointError` listing the shapes that differ
    and, with ``strict``, the keys missing on either side (without ``strict`` those are logged)."""
    missing, unexpected, reshaped = state_dict_diff(model, state_dict)
    keyed = [('model keys missing from the checkpoint', missing), ('checkpoint keys the model does not have', unexpected)]
    if not strict:
        for title, keys in keyed:
            if keys:
                print_log(f'{source}: {_listing(title, keys)} (strict=False: ignored)', logger='current', level=30)
        keyed = []
    if problems := [_listing(title, keys) for title, keys in (*keyed, ('shapes that differ', reshaped)) if keys]:
        raise CheckpointError(f'{source} does not fit the model:\n  ' + '\n  '.join(problems) + f'\n{advice}')


def load_fitted(model: nn.Module, state_dict: StateDict, source: str = 'checkpoint', strict: bool = True) -> None:
    """:func:`check_fits`, then ``load_state_dict``."""
    check_fits(model, state_dict, source, PRETRAINED_ADVICE, strict)
    model.load_state_dict(state_dict, strict=False)


def load_pretrained(model, path: str, prefix: str | None = None, keep_head: bool = False,
                    strict: bool = True) -> str:
    """Load a checkpoint of any format :mod:`lape_mm.checkpoint` reads into ``model``; return the format.
    Strict by default: a tensor missing or without a place is a :class:`CheckpointError` naming the keys."""
    state_dict, fmt, saved_grid = read_checkpoint(path, prefix)
    source = f'{path} ({fmt} format)'
    fitted, report = fit_state_dict(state_dict, model, keep_head, saved_grid)
    load_fitted(model, fitted, source, strict)
    report.log(source)
    print_log(f'loaded {fmt} checkpoint {path}', logger='current')
    return fmt
