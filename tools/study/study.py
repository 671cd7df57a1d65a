"""The LaPE-vs-add study: which settings, on which tasks, with which budget, and running them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from .data import TASKS, Split
from .train import Recipe, build_model, match_pe_scale, train_and_evaluate

IMG_SIZE = 32


@dataclass(frozen=True)
class Setting:
    """One model variant of the study: where the PE enters, which PE, and how it starts."""
    pe_join: str
    pe_type: str
    match_pe_scale: bool = False  # the learnable PE starts at the patch tokens' std, not 0.02

    @property
    def name(self) -> str:
        # Without a PE every join builds the same network, so 'none' is one setting.
        if self.pe_type == 'none':
            return 'no PE (any join)'
        return f'{self.pe_join} / {self.pe_type}' + (' (PE std = token std)' if self.match_pe_scale else '')


ADD, LAPE, ADD_MATCHED = Setting('add', 'learnable'), Setting('lape', 'learnable'), Setting('add', 'learnable', True)
SETTINGS = (
    ADD, LAPE, Setting('lape_independent', 'learnable'), Setting('share', 'learnable'), Setting('unshare', 'learnable'),
    Setting('add', 'sincos_2d'), Setting('lape', 'sincos_2d'),
    Setting('add', 'none'), ADD_MATCHED,
)
# (a, b) pairs compared seed by seed as a - b: every join against the standard ViT with the same
# PE type, then the PE-scale control against add and against LaPE.
COMPARISONS = tuple((s, Setting('add', s.pe_type)) for s in SETTINGS if s.pe_join != 'add') + (
    (ADD_MATCHED, ADD), (LAPE, ADD_MATCHED))
# Is a gap only a matter of training budget? add and LaPE again with budget_factor x the epochs.
BUDGET_CHECK = (ADD, LAPE)


@dataclass(frozen=True)
class StudyConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    recipes: dict[str, Recipe] = field(default_factory=lambda: {
        'digits': Recipe(epochs=30), 'position': Recipe(epochs=15)})
    # Training / test samples to keep per task (None: all).
    limits: dict[str, tuple[int, int] | None] = field(default_factory=lambda: {'digits': None, 'position': None})
    budget_factor: int = 3


FULL = StudyConfig()
# Seconds, for tests: every code path of the full study on a sliver of data.
QUICK = StudyConfig(
    seeds=(0, 1),
    recipes={task: Recipe(embed_dims=32, num_layers=2, num_heads=2, epochs=1, warmup_epochs=1)
             for task in TASKS},
    limits={'digits': (64, 32), 'position': (64, 32)},
    budget_factor=2)


@dataclass
class TaskResults:
    accuracy: dict[str, list[float]]  # setting name -> top-1 (%) per seed
    budget: dict[str, float]          # setting name -> top-1 (%) at budget_factor x epochs, first seed
    models: dict[str, torch.nn.Module]  # 'add' / 'lape' (learnable PE, first seed), for the PE figures


def _limit(data: Split, limit: tuple[int, int] | None) -> Split:
    if limit is None:
        return data
    train_x, train_y, test_x, test_y = data
    return train_x[:limit[0]], train_y[:limit[0]], test_x[:limit[1]], test_y[:limit[1]]


def run_one(data: Split, recipe: Recipe, setting: Setting, seed: int) -> tuple[float, torch.nn.Module]:
    """Train one model from ``seed`` (its initialisation and data order); return its test top-1."""
    torch.manual_seed(seed)
    num_classes = int(max(data[1].max(), data[3].max())) + 1
    model = build_model(recipe, setting.pe_join, setting.pe_type, data[0].shape[1], IMG_SIZE, num_classes)
    if setting.match_pe_scale:
        match_pe_scale(model, data[0][:256])
    return train_and_evaluate(model, data, recipe, seed), model


def run_study(config: StudyConfig = FULL, progress: bool = True) -> dict[str, TaskResults]:
    """Every task x setting x seed, then the budget check; one progress bar over all runs."""
    data = {task: _limit(load(), config.limits[task]) for task, load in TASKS.items()}
    jobs = [(task, setting, seed, 1) for task in TASKS for setting in SETTINGS for seed in config.seeds]
    jobs += [(task, setting, config.seeds[0], config.budget_factor) for task in TASKS for setting in BUDGET_CHECK]
    results = {task: TaskResults({}, {}, {}) for task in TASKS}
    for task, setting, seed, factor in tqdm(jobs, desc='study runs', unit='run', disable=not progress):
        recipe = config.recipes[task]
        recipe = dataclasses.replace(recipe, epochs=recipe.epochs * factor)
        acc, model = run_one(data[task], recipe, setting, seed)
        if factor > 1:
            results[task].budget[setting.name] = acc
            continue
        results[task].accuracy.setdefault(setting.name, []).append(acc)
        if seed == config.seeds[0] and setting in BUDGET_CHECK:
            results[task].models[setting.pe_join] = model
    return results
