"""Speed, memory and FLOPs of several models side by side, in one process.

Fairness rules: every model and precision runs once per repeat, in turn (interleaved, the order
rotated between repeats), after warm-up, and the median of the repeats is reported, so drifting
machine load and order effects hit all models alike. Inference is ``no_grad`` in eval mode; a
training step is forward + loss + backward in train mode (no optimizer step), with gradients
freed before each step so that their memory counts. Inference is measured for all models before
training starts, so eval-mode caches (LaPEViT's per-resolution PE) stay warm as they would in
deployment.
"""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from mmengine.analysis import parameter_count

from lape_mm.models.backbones import ARCH_ZOO
from .benchmark_models import Candidate, build_backbone, build_segmentor
from .flops import flop_analyzer, output_tensors
from .kernel_bound import KernelBound, vit_kernel_bound
from .memory import peak_memory
from .timing import timed

AMP_DTYPES = {'bfloat16': torch.bfloat16, 'float16': torch.float16}
MODES = ('infer', 'train')


@dataclass
class BenchmarkSettings:
    """What to measure. ``segmentors`` maps names to configs and replaces the backbone ``models``."""

    models: tuple[str, ...] = ('lape', 'add', 'timm', 'mmseg')
    segmentors: dict[str, str] = field(default_factory=dict)
    arch: str = 'base'
    depth: int | None = None
    size: tuple[int, int] = (512, 512)
    batch: int = 1
    threads: int | None = None
    repeats: int = 5
    warmup: int = 1
    amp: str | None = None  # 'bfloat16' / 'float16': also measure autocast at that dtype
    compile: bool = False  # also measure torch.compile'd copies of the backbones
    kernel_bound: bool = False  # also time the backbone's GEMMs and attention alone (see kernel_bound.py)
    device: str = 'cuda' if torch.cuda.is_available() else 'cpu'
    matmul_size: int = 4096


@dataclass
class ModelInfo:
    params: int
    macs: int  # multiply-adds of one forward pass over the batch (mmengine's "FLOPs")


@dataclass
class Row:
    """One (model, precision, mode): the timed repeats, peak memory and, for autocast inference,
    the output error against fp32 (max |amp - fp32| / max |fp32| over all outputs)."""

    model: str
    precision: str
    mode: str
    seconds: list[float]
    peak_bytes: int
    activation_bytes: int | None = None  # train: peak of the forward pass, i.e. what autograd keeps
    rel_error: float | None = None
    finite: bool = True

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def fastest(self) -> float:
        return min(self.seconds)


@dataclass
class BenchmarkResult:
    settings: BenchmarkSettings
    device_name: str
    torch_version: str
    matmul_gflops: dict[str, float]  # precision -> measured peak of a large matmul
    models: dict[str, ModelInfo]
    rows: list[Row]
    load_average: tuple[float, float]  # 1-minute load at start and end: other processes' share of the CPUs
    kernel_bounds: list[KernelBound] = field(default_factory=list)

    def row(self, model: str, precision: str, mode: str) -> Row | None:
        return next((r for r in self.rows if (r.model, r.precision, r.mode) == (model, precision, mode)), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BenchmarkResult:
        """The inverse of :meth:`to_dict` (e.g. of a saved ``benchmark.json``), to re-render a report."""
        settings = dict(data['settings'], size=tuple(data['settings']['size']),
                        models=tuple(data['settings']['models']))
        return cls(BenchmarkSettings(**settings), data['device_name'], data['torch_version'],
                   data['matmul_gflops'], {name: ModelInfo(**info) for name, info in data['models'].items()},
                   [Row(**row) for row in data['rows']], tuple(data['load_average']),
                   [KernelBound(**bound) for bound in data.get('kernel_bounds', [])])


def matmul_gflops(dtype: torch.dtype, device: torch.device, n: int, repeats: int = 5) -> float:
    """GFLOP/s of the fastest of ``repeats`` ``n x n`` by ``n x n`` matmuls: the machine's practical peak."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    return 2 * n ** 3 / min(timed(lambda: a @ b, device) for _ in range(repeats)) / 1e9


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    model = platform.processor()
    with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
        model = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), model)
    return f'{model}, {torch.get_num_threads()} threads'


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def infer_step(candidate: Candidate, images: torch.Tensor, dtype: torch.dtype | None):
    with torch.no_grad(), _autocast(images.device, dtype):
        return candidate.model(images)


def train_forward(candidate: Candidate, images: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    with _autocast(images.device, dtype):
        return candidate.loss(candidate.model, images)


def train_step(candidate: Candidate, images: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    candidate.model.zero_grad(set_to_none=True)
    loss = train_forward(candidate, images, dtype)
    loss.backward()
    return loss.detach()


def _memory(candidate: Candidate, images: torch.Tensor, dtype: torch.dtype | None, mode: str,
            device: torch.device) -> tuple[int, int | None]:
    """Peak bytes of one step and, for training, of its forward pass. Gradients are freed before
    the measurement, not inside it: a free of memory that an earlier profile saw allocated
    would lower the baseline. Inference is measured from cold eval-mode caches (``eval()`` drops
    LaPEViT's), so memory that a model keeps between calls counts in its peak."""
    if mode == 'infer':
        candidate.model.eval()
        return peak_memory(lambda: infer_step(candidate, images, dtype), device), None
    candidate.model.zero_grad(set_to_none=True)
    forward = peak_memory(lambda: train_forward(candidate, images, dtype), device)
    step = peak_memory(lambda: train_forward(candidate, images, dtype).backward(), device)
    candidate.model.zero_grad(set_to_none=True)
    return step, forward


def build_candidates(settings: BenchmarkSettings) -> list[Candidate]:
    if settings.segmentors:
        if settings.compile:
            raise ValueError('--compile applies to backbones only (a segmentor trains through model.loss, '
                             'not forward); drop --segmentor or --compile')
        return [build_segmentor(name, config, settings.depth, settings.batch, settings.size)
                for name, config in settings.segmentors.items()]
    candidates = [Candidate(name, build_backbone(name, settings.arch, settings.depth, settings.size))
                  for name in settings.models]
    if settings.compile:
        candidates += [Candidate(f'{c.name}+compile', torch.compile(c.model), c.loss) for c in candidates]
        # lape, add and lape-cp share LaPEViT.forward, and dynamo limits graphs per code object:
        # each model x precision x mode needs its own.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 4 * len(candidates))
    return candidates


def _model_info(candidate: Candidate, images: torch.Tensor) -> ModelInfo:
    model = getattr(candidate.model, '_orig_mod', candidate.model)  # a compiled model's own module
    model.eval()
    return ModelInfo(parameter_count(model)[''], flop_analyzer(model, (images,)).total())


def _relative_error(outputs, reference) -> float:
    """max |outputs - reference| / max |reference| over all output tensors."""
    error = max((o.float() - r.float()).abs().max().item()
                for o, r in zip(output_tensors(outputs), output_tensors(reference)))
    return error / max(max(r.abs().max().item() for r in output_tensors(reference)), 1e-12)


def _check_precision(row: Row, candidate: Candidate, images: torch.Tensor, dtype: torch.dtype) -> None:
    """Inference: output error against fp32 and NaN/inf check; training: finite loss and gradients."""
    if row.mode == 'infer':
        outputs = infer_step(candidate, images, dtype)
        row.rel_error = _relative_error(outputs, infer_step(candidate, images, None))
        row.finite = all(bool(torch.isfinite(t).all()) for t in output_tensors(outputs))
    else:
        loss = train_step(candidate, images, dtype)
        grads = [p.grad for p in candidate.model.parameters() if p.grad is not None]
        row.finite = bool(torch.isfinite(loss)) and all(bool(torch.isfinite(g).all()) for g in grads)


def run_benchmark(settings: BenchmarkSettings, log: Callable[[str], None] = print) -> BenchmarkResult:
    """Measure every candidate and precision in both modes; see the module docstring for the rules."""
    device = torch.device(settings.device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    precisions = {'fp32': None}
    if settings.amp:
        precisions[settings.amp] = AMP_DTYPES[settings.amp]
    load_at_start = os.getloadavg()[0]
    log(f'{device_name(device)}; measuring a {settings.matmul_size}^2 matmul')
    peaks = {name: matmul_gflops(dtype or torch.float32, device, settings.matmul_size)
             for name, dtype in precisions.items()}
    bounds = kernel_bounds(settings, precisions, device) if settings.kernel_bound else []
    candidates = build_candidates(settings)
    images = torch.randn(settings.batch, 3, *settings.size, device=device)
    infos = {}
    for candidate in candidates:
        candidate.model.to(device)
        infos[candidate.name] = _model_info(candidate, images)
        log(f'{candidate.name}: {infos[candidate.name].params / 1e6:.1f} M params, '
            f'{infos[candidate.name].macs / 1e9:.1f} GMACs')

    rows = []
    for mode, step in (('infer', infer_step), ('train', train_step)):
        for candidate in candidates:
            candidate.model.train(mode == 'train')
        runs = [(c, p) for c in candidates for p in precisions]
        for candidate, precision in runs:
            for _ in range(settings.warmup):
                step(candidate, images, precisions[precision])
        seconds = {(c.name, p): [] for c, p in runs}
        for repeat in range(settings.repeats):
            shift = repeat * len(runs) // settings.repeats  # rotate: no model always runs first
            for candidate, precision in runs[shift:] + runs[:shift]:
                seconds[candidate.name, precision].append(
                    timed(lambda: step(candidate, images, precisions[precision]), device))
            log(f'{mode} repeat {repeat + 1}/{settings.repeats}: ' + ', '.join(
                f'{name}/{p} {times[-1] * 1e3:.0f} ms' for (name, p), times in seconds.items()))
        for candidate, precision in runs:
            row = Row(candidate.name, precision, mode, seconds[candidate.name, precision],
                      *_memory(candidate, images, precisions[precision], mode, device))
            if precisions[precision] is not None:
                _check_precision(row, candidate, images, precisions[precision])
            rows.append(row)
    return BenchmarkResult(settings, device_name(device), torch.__version__, peaks, infos, rows,
                           (load_at_start, os.getloadavg()[0]), bounds)


def kernel_bounds(settings: BenchmarkSettings, precisions: dict[str, torch.dtype | None],
                  device: torch.device) -> list[KernelBound]:
    """:func:`vit_kernel_bound` of the benchmarked backbone (patch 16, cls token) per precision and mode."""
    if settings.segmentors:
        raise ValueError('--kernel-bound times a backbone\'s kernels; drop --segmentor or --kernel-bound')
    dims = ARCH_ZOO[settings.arch]
    tokens = (settings.size[0] // 16) * (settings.size[1] // 16) + 1
    return [vit_kernel_bound(dims['embed_dims'], dims['num_heads'], settings.depth or dims['num_layers'], tokens,
                             settings.batch, dtype or torch.float32, device, mode, precision,
                             repeats=settings.repeats)
            for precision, dtype in precisions.items() for mode in MODES]

