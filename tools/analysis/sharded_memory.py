"""Per-rank bytes of parameters, gradients and optimizer states under FSDP and under DDP.

Counted from tensor sizes, not read from an allocator, so the figures are exact, do not depend on
machine load, and a model as large as ViT-L needs no memory: each rank of a real N-process gloo
group builds the config's model with its parameters on the meta device, lays it out as training does (FSDP: the
config's ``strategy.shard_modules`` through :func:`lape_mm.engine.fsdp_strategy.shard_model`;
DDP: every rank a whole replica), gives every trainable parameter a gradient of that layout
(FSDP2's reduce-scatter leaves DTensor gradients sharded like their parameters, DDP full ones),
runs one step of the config's optimizer (its constructor and param groups) to create its states,
and adds up the bytes of its local tensors. ``real_step=True`` also runs a real forward, backward
and step on real tensors (small configs): the test checks both give the same bytes.

Not counted: activations, FSDP's transient all-gather buffers, and DDP's gradient buckets (by
default one more gradient-sized buffer per rank, unless ``gradient_as_bucket_view=True``).
"""
from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

from lape_mm.engine.fsdp_strategy import shard_model
from .build import build_model, load_config
from .inputs import dummy_data_samples

MODES = ('ddp', 'fsdp')


@dataclass
class StateBytes:
    rank: int
    params: int
    grads: int
    optimizer: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer


def local_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes this rank holds for ``tensors``: a DTensor counts only its local shard."""
    total = 0
    for t in tensors:
        local = t.to_local() if isinstance(t, DTensor) else t
        total += local.numel() * local.element_size()
    return total


def state_bytes(rank: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> StateBytes:
    params = list(model.parameters())
    optim_states = [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return StateBytes(rank, local_bytes(params), local_bytes(p.grad for p in params if p.grad is not None),
                      local_bytes(optim_states))


def _training_step(model: torch.nn.Module, cfg, size: tuple[int, int]) -> None:
    """A real forward + backward of the segmentor's losses on random images and labels (2: BN's least)."""
    images = torch.randn(2, 3, *size)
    samples = dummy_data_samples('mmseg', 2, size, cfg.model.decode_head.num_classes)
    losses = model(images, samples, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()


@contextlib.contextmanager
def parameters_on_meta():
    """Every ``nn.Parameter`` created inside is moved to the meta device as it is registered (one
    parameter at a time exists in memory); buffers and other tensors stay real, so constructors that
    compute with tensors still run. accelerate's ``init_empty_weights(include_buffers=False)``."""
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None:
            param = nn.Parameter(param.to('meta'), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def _count(cfg, mode: str, world_size: int, real: bool, size: tuple[int, int]) -> StateBytes:
    torch.manual_seed(0)
    with contextlib.nullcontext() if real else parameters_on_meta():
        model = build_model(cfg)
    if mode == 'fsdp':
        shard_model(model, init_device_mesh('cpu', (world_size,)), tuple(cfg.strategy.shard_modules))
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    if real:
        _training_step(model if mode == 'fsdp' else torch.nn.parallel.DistributedDataParallel(model), cfg, size)
    else:
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
    optimizer.step()
    return state_bytes(dist.get_rank(), model, optimizer)


def _measure_rank(rank: int, world_size: int, port: int, config: str, real_step: bool, size: tuple[int, int],
                  results) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world_size)
    try:
        cfg = load_config(config, {'model.pretrained': None, 'model.backbone.init_cfg': None,
                                   'model.backbone.drop_path_rate': 0.0})
        counts = {mode: asdict(_count(cfg, mode, world_size, False, size)) for mode in MODES}
        if real_step:
            counts.update({f'{mode} real step': asdict(_count(cfg, mode, world_size, True, size)) for mode in MODES})
        results.put(counts)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def measure(config: str, world_size: int = 2, real_step: bool = False,
            size: tuple[int, int] = (64, 64)) -> dict[str, list[StateBytes]]:
    """Bytes per mode ('ddp', 'fsdp') and rank of ``config``'s model trained on ``world_size`` CPU
    processes. ``real_step`` adds 'ddp real step' and 'fsdp real step', from a real step on
    ``size`` images (small configs)."""
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    results = mp.get_context('spawn').SimpleQueue()
    mp.spawn(_measure_rank, args=(world_size, _free_port(), config, real_step, tuple(size), results),
             nprocs=world_size)
    per_rank = [results.get() for _ in range(world_size)]
    return {key: sorted((StateBytes(**r[key]) for r in per_rank), key=lambda r: r.rank) for key in per_rank[0]}


def report(config: str, rows: dict[str, list[StateBytes]]) -> str:
    """A Markdown table: MiB per rank and mode, and each FSDP rank's total over DDP's."""
    mib = 2 ** 20
    ddp_total = rows['ddp'][0].total
    lines = [f'Per-rank parameter, gradient and optimizer-state memory, `{config}`:', '',
             '| mode | rank | parameters MiB | gradients MiB | optimizer MiB | total MiB | / DDP |',
             '|---|---:|---:|---:|---:|---:|---:|']
    for mode, ranks in rows.items():
        for r in ranks:
            lines.append(f'| {mode} | {r.rank} | {r.params / mib:.1f} | {r.grads / mib:.1f} | '
                         f'{r.optimizer / mib:.1f} | {r.total / mib:.1f} | {r.total / ddp_total:.3f} |')
    return '\n'.join(lines)
