"""The deeper study (docs/reproduction.md, part 3): 12 blocks on an 8x8 grid, LaPE against RoPE, starting
from a plain ViT checkpoint, and test resolutions the models were not trained at.

Three groups of runs, each (group, setting, seed) one job whose result is cached on disk:

- ``scratch``: every position encoding trained from scratch on the downstream task at ``img_size``,
  tested there and, without fine-tuning, at the ``test_sizes`` (PE resized bicubically, RoPE computed at
  the new grid); then a short fine-tune at ``finetune_size`` and a test there.
- ``pretrain``: the plain checkpoints a user has: ``add`` (DeiT-like) and RoPE-only (RoPE-ViT-like),
  trained on the pretraining task, one of each (seed ``seeds[0]``), as a user has one checkpoint.
- ``finetune``: each checkpoint loaded into a downstream model (as a user's file is: ``fit_state_dict``,
  a fresh head) and fine-tuned on the downstream task with every seed (head, data order), tested at
  every size. Before training, each start
  is also tested on the pretraining task with the checkpoint's own head: does it still compute the
  checkpoint's function?
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lape_mm.models.backbones import fit_state_dict
from lape_mm.models.backbones.checkpoint_fit import load_fitted
from .data import TASKS, Split
from .study import _limit
from .train import Recipe, accuracy, build_model, train_and_evaluate


@dataclass(frozen=True)
class DeepSetting:
    """A model variant: PE join, PE type and RoPE type; for fine-tunes, the checkpoint it starts from."""
    label: str
    pe_join: str
    pe_type: str
    rope: str | None = None
    start: str | None = None  # label of the pretrain setting whose checkpoint it loads

    @property
    def slug(self) -> str:
        """The label as a file name."""
        return re.sub(r'[^a-z0-9]+', '_', self.label.lower()).strip('_')


ADD = DeepSetting('add', 'add', 'learnable')
LAPE = DeepSetting('lape', 'lape', 'learnable')
ROPE = DeepSetting('rope axial', 'add', 'none', 'axial')
ROPE_MIXED = DeepSetting('rope mixed', 'add', 'none', 'mixed')
ROPE_LAPE = DeepSetting('rope axial + lape PE', 'lape', 'learnable', 'axial')
SINCOS = DeepSetting('add / sincos_2d', 'add', 'sincos_2d')
SCRATCH = (ADD, LAPE, ROPE, ROPE_MIXED, ROPE_LAPE, SINCOS)

PRETRAIN = (ADD, ROPE)  # the checkpoints users have: a DeiT-like and a RoPE-ViT-like ViT
FINETUNE = (
    DeepSetting('add from add', 'add', 'learnable', start=ADD.label),
    DeepSetting('lape from add (identity pe_norm)', 'lape', 'learnable', start=ADD.label),
    DeepSetting('add_lape from add (function-keeping)', 'add_lape', 'learnable', start=ADD.label),
    DeepSetting('rope axial from rope axial', 'add', 'none', 'axial', start=ROPE.label),
)
# (a, b) compared seed by seed as a - b, within a group.
SCRATCH_COMPARISONS = tuple((s, ADD) for s in SCRATCH if s is not ADD) + ((ROPE, LAPE), (ROPE_LAPE, ROPE))
FINETUNE_COMPARISONS = ((FINETUNE[1], FINETUNE[0]), (FINETUNE[2], FINETUNE[0]), (FINETUNE[2], FINETUNE[1]),
                        (FINETUNE[3], FINETUNE[0]))
FIGURE_MODELS = (ADD, LAPE)  # their seed-0 weights are kept for the per-layer PE figure


@dataclass(frozen=True)
class DeepConfig:
    """Tasks, model, schedules and sizes of the deep study."""
    seeds: tuple[int, ...] = (0, 1, 2)
    pretrain_task: str = 'digits'
    task: str = 'position'
    # 32x32 inputs in 4x4 patches: an 8x8 grid, 12 blocks of width 32 (2 heads of 16 channels: RoPE
    # needs head widths divisible by 4).
    recipe: Recipe = Recipe(embed_dims=32, num_layers=12, num_heads=2, mlp_ratio=2., patch_size=4, epochs=7,
                            lr=1e-3, warmup_epochs=1)
    pretrain_epochs: int = 30
    finetune: Recipe = Recipe(embed_dims=32, num_layers=12, num_heads=2, mlp_ratio=2., patch_size=4, epochs=7,
                              lr=1e-3, warmup_epochs=0.5)
    img_size: int = 32
    test_sizes: tuple[int, ...] = (32, 48, 64)  # 1x, 1.5x, 2x
    finetune_size: int = 48
    resolution_epochs: int = 1  # the short fine-tune at finetune_size
    # Training / test samples to keep per task (None: all).
    limits: dict[str, tuple[int, int] | None] = field(default_factory=lambda: {'digits': None, 'position': None})


DEEP_FULL = DeepConfig()
_TINY = Recipe(embed_dims=16, num_layers=12, num_heads=1, mlp_ratio=1., patch_size=4, epochs=1, warmup_epochs=1)
# Seconds, for tests: every code path of the full study on a sliver of data.
DEEP_QUICK = DeepConfig(seeds=(0, 1), recipe=_TINY, pretrain_epochs=1, finetune=_TINY, test_sizes=(32, 48),
                        limits={'digits': (48, 16), 'position': (48, 16)})


@dataclass(frozen=True)
class Job:
    group: str  # 'pretrain', 'scratch' or 'finetune'
    setting: DeepSetting
    seed: int

    @property
    def name(self) -> str:
        return f'{self.group}__{self.setting.slug}__seed{self.seed}'


def jobs(config: DeepConfig) -> list[Job]:
    """Every job, pretraining before the fine-tunes that load its checkpoints."""
    return ([Job('pretrain', setting, config.seeds[0]) for setting in PRETRAIN]
            + [Job(group, setting, seed) for group, settings in (('scratch', SCRATCH), ('finetune', FINETUNE))
               for setting in settings for seed in config.seeds])


def job_cost(job: Job, config: DeepConfig, sizes: dict[str, int]) -> float:
    """Training steps, weighted by tokens per image relative to ``img_size``: the progress bar's unit."""
    def steps(recipe: Recipe, task: str, epochs: int) -> int:
        return epochs * -(-sizes[task] // recipe.batch_size)

    if job.group == 'pretrain':
        return steps(config.recipe, config.pretrain_task, config.pretrain_epochs)
    if job.group == 'finetune':
        return steps(config.finetune, config.task, config.finetune.epochs)
    tokens = (config.finetune_size / config.img_size) ** 2
    return steps(config.recipe, config.task, config.recipe.epochs) + tokens * steps(
        config.finetune, config.task, config.resolution_epochs)


def job_inputs(job: Job, config: DeepConfig) -> dict:
    """What a job's result depends on (task, data, recipes, sizes), as JSON: a cached result made with
    other inputs is stale and trains again."""
    def task(name: str) -> dict:
        return {'task': name, 'limit': config.limits[name], 'img_size': config.img_size}

    pretrain = {**task(config.pretrain_task),
                'recipe': dataclasses.asdict(dataclasses.replace(config.recipe, epochs=config.pretrain_epochs))}
    if job.group == 'pretrain':
        inputs = pretrain
    elif job.group == 'scratch':
        inputs = {**task(config.task), 'test_sizes': config.test_sizes, 'recipe': dataclasses.asdict(config.recipe),
                  'finetune_size': config.finetune_size, 'resolution_recipe': dataclasses.asdict(
                      dataclasses.replace(config.finetune, epochs=config.resolution_epochs))}
    else:
        inputs = {**task(config.task), 'test_sizes': config.test_sizes,
                  'recipe': dataclasses.asdict(config.finetune), 'checkpoint': pretrain}
    return json.loads(json.dumps(inputs))


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """The same images at ``size`` x ``size`` (bilinear): a test at a higher resolution."""
    return images if images.shape[-1] == size else F.interpolate(images, size=(size, size), mode='bilinear',
                                                                  align_corners=False)


def accuracy_at(model: torch.nn.Module, data: Split, sizes: tuple[int, ...]) -> dict[str, float]:
    """Test top-1 (%) at every size, keyed by the size as a string (JSON keys)."""
    return {str(size): accuracy(model, resize(data[2], size), data[3]) for size in sizes}


def _as_rgb(data: Split) -> Split:
    """Grey images with their channel repeated three times, so that one patch embedding fits both tasks."""
    train_x, train_y, test_x, test_y = data
    return train_x.expand(-1, 3, -1, -1), train_y, test_x.expand(-1, 3, -1, -1), test_y


class DeepStudy:
    """Runs the jobs of a :class:`DeepConfig`, each once: results and the weights later jobs need are
    cached in ``cache``, so a stopped study goes on where it stopped."""

    def __init__(self, config: DeepConfig, cache: str | Path):
        self.config, self.cache = config, Path(cache)
        self.data = {task: _as_rgb(_limit(TASKS[task](), config.limits[task]))
                     for task in (config.pretrain_task, config.task)}

    def _num_classes(self, task: str) -> int:
        data = self.data[task]
        return int(max(data[1].max(), data[3].max())) + 1

    def _build(self, setting: DeepSetting, task: str, recipe: Recipe) -> torch.nn.Module:
        return build_model(recipe, setting.pe_join, setting.pe_type, self.data[task][0].shape[1],
                           self.config.img_size, self._num_classes(task), setting.rope)

    def result_path(self, job: Job) -> Path:
        return self.cache / f'{job.name}.json'

    def weights_path(self, job: Job) -> Path:
        return self.cache / f'{job.name}.pt'

    def keeps_weights(self, job: Job) -> bool:
        return job.group == 'pretrain' or (job.group == 'scratch' and job.setting in FIGURE_MODELS
                                           and job.seed == self.config.seeds[0])

    def is_cached(self, job: Job) -> bool:
        path = self.result_path(job)
        if not path.is_file() or (self.keeps_weights(job) and not self.weights_path(job).is_file()):
            return False
        return json.loads(path.read_text()).get('inputs') == job_inputs(job, self.config)

    def run(self, progress: bool = True) -> dict[str, dict]:
        """Every job (cached ones are read back); returns job name -> result."""
        self.cache.mkdir(parents=True, exist_ok=True)
        todo = [job for job in jobs(self.config) if not self.is_cached(job)]
        sizes = {task: len(data[1]) for task, data in self.data.items()}
        costs = {job: job_cost(job, self.config, sizes) for job in todo}
        with tqdm(total=round(sum(costs.values())), desc='deep study', unit='step', disable=not progress) as bar:
            for job in todo:
                bar.set_postfix_str(job.name)
                self._run_job(job)
                bar.update(round(costs[job]))
        results = {job.name: json.loads(self.result_path(job).read_text()) for job in jobs(self.config)}
        return {name: {k: v for k, v in result.items() if k != 'inputs'} for name, result in results.items()}

    def _run_job(self, job: Job) -> None:
        start = time.perf_counter()
        torch.manual_seed(job.seed)
        model, result = getattr(self, f'_{job.group}')(job)
        result['seconds'] = round(time.perf_counter() - start, 1)
        result['inputs'] = job_inputs(job, self.config)
        if self.keeps_weights(job):
            torch.save(model.state_dict(), self.weights_path(job))
        # Written last, atomically: a result on disk means the job is complete.
        path = self.result_path(job)
        path.with_suffix('.tmp').write_text(json.dumps(result, indent=1))
        path.with_suffix('.tmp').replace(path)

    def _pretrain(self, job: Job) -> tuple[torch.nn.Module, dict]:
        config = self.config
        recipe = dataclasses.replace(config.recipe, epochs=config.pretrain_epochs)
        model = self._build(job.setting, config.pretrain_task, recipe)
        acc = train_and_evaluate(model, self.data[config.pretrain_task], recipe, job.seed)
        return model, {'accuracy': {str(config.img_size): acc}}

    def _scratch(self, job: Job) -> tuple[torch.nn.Module, dict]:
        config, data = self.config, self.data[self.config.task]
        model = self._build(job.setting, config.task, config.recipe)
        train_and_evaluate(model, data, config.recipe, job.seed)
        result = {'accuracy': accuracy_at(model, data, config.test_sizes)}
        tuned = self._build(job.setting, config.task, config.finetune)
        tuned.load_state_dict(model.state_dict())
        larger = tuple(size for size in config.test_sizes if size >= config.finetune_size)
        train_and_evaluate(tuned, self._at(data, config.finetune_size), dataclasses.replace(
            config.finetune, epochs=config.resolution_epochs), job.seed)
        result['finetuned_at'] = config.finetune_size
        result['accuracy_after_finetune'] = accuracy_at(tuned, data, larger)
        return model, result

    def _at(self, data: Split, size: int) -> Split:
        return resize(data[0], size), data[1], resize(data[2], size), data[3]

    def _finetune(self, job: Job) -> tuple[torch.nn.Module, dict]:
        config, data = self.config, self.data[self.config.task]
        checkpoint = torch.load(self.weights_path(Job('pretrain', self._pretrained(job.setting), config.seeds[0])),
                                weights_only=True)
        # The start tested on the pretraining task, with the checkpoint's head: its function kept or not.
        start = self._build(job.setting, config.pretrain_task, config.finetune)
        load_fitted(start, fit_state_dict(checkpoint, start, keep_head=True)[0], 'pretrained checkpoint')
        result = {'start_accuracy_on_pretrain_task': accuracy(start, *self.data[config.pretrain_task][2:])}
        model = self._build(job.setting, config.task, config.finetune)
        fitted, _ = fit_state_dict(checkpoint, model)  # a fresh head for the downstream classes
        fitted.update({k: v for k, v in model.state_dict().items() if k.startswith('head.')})
        load_fitted(model, fitted, 'pretrained checkpoint')
        train_and_evaluate(model, data, config.finetune, job.seed)
        result['accuracy'] = accuracy_at(model, data, config.test_sizes)
        return model, result

    @staticmethod
    def _pretrained(setting: DeepSetting) -> DeepSetting:
        return next(s for s in PRETRAIN if s.label == setting.start)

    def figure_model(self, setting: DeepSetting) -> torch.nn.Module:
        """The seed-0 scratch model of ``setting`` (one of FIGURE_MODELS), rebuilt from its weights."""
        model = self._build(setting, self.config.task, self.config.recipe)
        model.load_state_dict(torch.load(self.weights_path(Job('scratch', setting, self.config.seeds[0])),
                                         weights_only=True))
        return model.eval()
