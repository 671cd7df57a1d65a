"""The paper's PE figures: per-layer token similarity maps and layer-to-layer PE similarity.

Typical use (also from other studies' scripts)::

    pes = layer_pos_embeds(model)                       # list of [h*w, C], one per PE a block sees
    maps = token_similarity_maps(pes, model.patch_grid)  # [L, h, w]
    sim = layer_similarity_matrix(pes)                   # [L, L]
    save_figures({'lape': (pes, model.patch_grid, pe_caption(model))}, 'out/')
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lape_mm.models.backbones import LaPEViT

Grid = tuple[int, int]
# name -> (layer PEs, token grid, caption)
FigureInputs = dict[str, tuple[list[torch.Tensor], Grid, str]]


def layer_pos_embeds(model: LaPEViT, grid: Grid | None = None) -> list[torch.Tensor]:
    """The position signal of each block for a token ``grid`` (default: the model's PE grid).

    Returns float ``[h*w, C]`` tensors (cls slot dropped): 'lape' the normalized ``p_l`` of every
    block, 'lape_independent' ``LN_l(pe)``, 'unshare' each block's own PE. 'add' and 'share' have
    one PE and no per-layer version of it (norm1 normalizes PE and content together, so the PE
    alone is not what a block sees): the raw PE, as a single entry.
    """
    if model.pos_embed is None:
        raise ValueError("pe_type='none' has no position embedding to show; use a model with a PE")
    grid = tuple(grid or model.patch_grid)
    prefix = model.num_prefix_tokens if model.cls_token is not None else 0
    with torch.no_grad():
        input_pe, block_pes = model.pos_embed_terms(grid)
    pes = [input_pe] if input_pe is not None else block_pes[:1] if model.pe_join == 'share' else block_pes
    return [pe[0, prefix:].detach().float().cpu() for pe in pes]


def pe_caption(model: LaPEViT) -> str:
    """What :func:`layer_pos_embeds` returned for this model, for figure titles."""
    captions = {'lape': 'LaPE: normalized p_l = LN_l(p_(l-1)) per block',
                'lape_independent': 'LaPE (independent): LN_l(pe) per block',
                'unshare': 'unshare: each block\'s own raw PE',
                'add': 'add: raw PE (one PE, added before block 0; no per-layer PE exists)',
                'share': 'share: raw PE (the same PE added before every block)'}
    return captions[model.pe_join]


def token_similarity_maps(pes: list[torch.Tensor], grid: Grid, token: Grid | None = None) -> torch.Tensor:
    """Cosine similarity of one token's PE (``token`` = (row, col), default the centre) to every
    position, per entry of ``pes``: ``[L, h, w]``."""
    h, w = grid
    row, col = token if token is not None else (h // 2, w // 2)
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f'token {(row, col)} lies outside the {h}x{w} grid; pick row < {h}, col < {w}')
    index = row * w + col
    return torch.stack([F.cosine_similarity(pe[index:index + 1], pe, dim=-1).view(h, w) for pe in pes])


def layer_similarity_matrix(pes: list[torch.Tensor]) -> torch.Tensor:
    """Cosine similarity between the whole (flattened ``h*w*C``) PEs of every pair of entries: ``[L, L]``."""
    flat = F.normalize(torch.stack([pe.flatten() for pe in pes]), dim=1)
    return flat @ flat.T


def _plot_token_maps(axes, maps: torch.Tensor, labels: list[str]) -> object:
    image = None
    for ax, sim, label in zip(axes, maps, labels):
        image = ax.imshow(sim.numpy(), cmap='RdBu_r', vmin=-1, vmax=1)
        ax.set_title(label, fontsize=8)
        ax.axis('off')
    return image


def _plot_matrix(ax, matrix: torch.Tensor) -> object:
    """The ``[L, L]`` map, or for a single PE ('add', 'share') a note: a 1x1 map compares nothing."""
    from matplotlib.ticker import MaxNLocator
    if len(matrix) == 1:
        ax.text(0.5, 0.5, 'a single PE:\nno layer-to-layer similarity', ha='center', va='center', fontsize=9)
        ax.axis('off')
        return None
    image = ax.imshow(matrix.numpy(), cmap='viridis', vmin=min(0., matrix.min().item()), vmax=1)
    for axis, label in ((ax.xaxis, ax.set_xlabel), (ax.yaxis, ax.set_ylabel)):
        axis.set_major_locator(MaxNLocator(integer=True))
        label('block')
    return image


def _labels(count: int) -> list[str]:
    return ['raw PE'] if count == 1 else [f'block {i}' for i in range(count)]


def _save_token_maps(plt, path: Path, title: str, maps: torch.Tensor) -> None:
    cols = min(len(maps), 6)
    rows = -(-len(maps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.2 * rows), squeeze=False)
    image = _plot_token_maps(axes.flat, maps, _labels(len(maps)))
    for ax in list(axes.flat)[len(maps):]:
        ax.axis('off')
    fig.colorbar(image, ax=axes, shrink=0.8, label='cosine similarity')
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _save_matrix(plt, path: Path, title: str, matrix: torch.Tensor) -> None:
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    if (image := _plot_matrix(ax, matrix)) is not None:
        fig.colorbar(image, ax=ax, label='cosine similarity')
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)


def contact_sheet(plt, panels: dict[str, tuple[torch.Tensor, torch.Tensor, str]]):
    """One row per model: its token maps, then its layer matrix where it has more than one PE (a row
    with a single PE leaves that panel empty; without any matrix there is no such column); captions
    underneath. ``panels``: name -> (maps ``[L, h, w]``, matrix ``[L, L]``, caption)."""
    with_matrix = any(len(matrix) > 1 for _, matrix, _ in panels.values())
    columns = max(len(maps) for maps, _, _ in panels.values()) + with_matrix
    height = 1.9 * len(panels) + 0.2 * len(panels)
    fig, axes = plt.subplots(len(panels), columns, figsize=(1.6 * columns, height), squeeze=False)
    for row, (name, (maps, matrix, _)) in enumerate(panels.items()):
        labels = _labels(len(maps))
        _plot_token_maps(axes[row], maps, [f'{name}: {labels[0]}'] + labels[1:])
        for ax in axes[row, len(maps):]:
            ax.axis('off')
        if len(matrix) > 1:
            _plot_matrix(axes[row, -1], matrix)
            axes[row, -1].axis('on')
            axes[row, -1].set_title('layer similarity', fontsize=8)
    fig.tight_layout(rect=(0, 0.2 * len(panels) / height, 1, 1))
    fig.text(0.01, 0.01, '\n'.join(f'{name}: {caption}' for name, (_, _, caption) in panels.items()),
             fontsize=8, va='bottom')
    return fig


def save_figures(inputs: FigureInputs, out_dir: str | Path, token: Grid | None = None) -> list[Path]:
    """Write, per name, ``{name}_token_similarity.png`` and ``{name}_layer_similarity.png`` (a note for a
    single PE), and ``contact_sheet.png`` (see :func:`contact_sheet`). Returns the paths."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, panels = [], {}
    for name, (pes, grid, caption) in inputs.items():
        maps, matrix = token_similarity_maps(pes, grid, token), layer_similarity_matrix(pes)
        panels[name] = maps, matrix, caption
        written += [out_dir / f'{name}_token_similarity.png', out_dir / f'{name}_layer_similarity.png']
        _save_token_maps(plt, written[-2], f'{name}: {caption}', maps)
        _save_matrix(plt, written[-1], f'{name}: layer-to-layer PE similarity', matrix)
    written.append(out_dir / 'contact_sheet.png')
    fig = contact_sheet(plt, panels)
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written
