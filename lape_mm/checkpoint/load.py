"""Load any supported checkpoint into a :class:`LaPEViT`: convert, fit the PE, report keys."""
from __future__ import annotations

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..models.layers import infer_grid, resize_pos_embed
from .convert import StateDict, to_lape_state_dict
from .safe_load import CheckpointError, safe_load

HEAD_PREFIXES = ('head.', 'fc_norm.', 'head_drop.')


def fit_pos_embed(pos_embed: torch.Tensor, model) -> torch.Tensor:
    """Resize a checkpoint PE ``[1|L, 1 + h*w, C]`` to the model's grid and number of copies."""
    prefix = model.num_prefix_tokens
    same_slots = pos_embed.shape[1] == model.pos_embed.shape[1]
    old_grid = model.patch_grid if same_slots else infer_grid(pos_embed.shape[1] - prefix)
    pos_embed = resize_pos_embed(pos_embed, model.patch_grid, old_grid, prefix)
    copies = model.pos_embed.shape[0]
    if pos_embed.shape[0] == 1 and copies > 1:  # one shared PE seeds every per-block copy ('unshare')
        pos_embed = pos_embed.expand(copies, -1, -1).clone()
    return pos_embed


def adapt_state_dict(state_dict: StateDict, model: nn.Module, keep_head: bool = False) -> StateDict:
    """Fit a native state dict to ``model``: PE grid, identity ``pe_norm``, no classifier head."""
    state_dict = dict(state_dict)
    if not keep_head:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(HEAD_PREFIXES)}
    if isinstance(model.pos_embed, nn.Parameter) and 'pos_embed' in state_dict:
        state_dict['pos_embed'] = fit_pos_embed(state_dict['pos_embed'], model)
    else:
        state_dict.pop('pos_embed', None)  # fixed (sincos) or no PE: nothing to load
    own = model.state_dict()
    fresh_pe_norms = sorted({k.rsplit('.', 1)[0] for k in own if '.pe_norm.' in k and k not in state_dict})
    for name in fresh_pe_norms:
        state_dict[f'{name}.weight'] = torch.ones_like(own[f'{name}.weight'])
        state_dict[f'{name}.bias'] = torch.zeros_like(own[f'{name}.bias'])
    if fresh_pe_norms:
        print_log(f'{len(fresh_pe_norms)} pe_norm layers are not in the checkpoint (a plain ViT): '
                  'initialised to identity (weight 1, bias 0)', logger='current')
    return state_dict


def load_into(model: nn.Module, state_dict: StateDict, source: str = 'checkpoint') -> None:
    """``load_state_dict(strict=False)`` that raises on shape mismatches and logs missing keys."""
    own = model.state_dict()
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise CheckpointError(f'{source} does not fit the model ({len(mismatched)} shape mismatches):\n  '
                              + '\n  '.join(mismatched[:10])
                              + '\nCheck arch / embed_dims / num_layers / patch_size against the checkpoint.')
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys:
        print_log(f'missing keys in {source} (left at their initial values): {result.missing_keys}',
                  logger='current', level=30)
    if result.unexpected_keys:
        print_log(f'unexpected keys in {source} (ignored): {result.unexpected_keys}',
                  logger='current', level=30)


def load_pretrained(model: nn.Module, path: str, prefix: str | None = None, keep_head: bool = False) -> str:
    """Load a timm/DeiT, LaPE-authors, mmseg, mmpretrain or lape_mm checkpoint into ``model``.

    Returns the detected format.
    """
    state_dict, fmt = to_lape_state_dict(safe_load(path), prefix)
    load_into(model, adapt_state_dict(state_dict, model, keep_head), source=f'{path} ({fmt} format)')
    print_log(f'loaded {fmt} checkpoint {path}', logger='current')
    return fmt
