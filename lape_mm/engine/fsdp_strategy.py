"""Fully sharded data parallel training (torch FSDP2 ``fully_shard``) as an mmengine strategy.

Select it in a config with ``runner_type = 'FlexibleRunner'`` and ``strategy = dict(type='FSDP2Strategy')``
(``configs/_base_/fsdp.py``). Each rank keeps 1/N of every parameter, gradient and optimizer state.

Why not mmengine's own ``FSDPStrategy``: it wraps the model in FSDP1 with ``use_orig_params=True``, whose
parameters are 1-D views of each rank's part of a flat shard (at 2 ranks, rank 0 sees a Linear's (8, 8)
weight as (44,) and its bias as (0,)), so the optimizer constructors that group parameters by ``ndim`` (timm's
and our layer-decay weight-decay rule) put every weight in the no-decay group. FSDP2 keeps parameter names
and shapes (they become DTensors), so the configs' optimizer constructors work unchanged. mmengine's
``FSDPStrategy`` still provides the rest: process group set-up (its NCCL path on GPUs), the checkpoint
written on rank 0 only, and the scheduler rebuild.

Checkpoints hold full (unsharded) state dicts: the model's is an ordinary ``state_dict`` that a one-process
``tools/test.py`` (or any mmseg tool) loads; the optimizer's is keyed by parameter name.
"""
from __future__ import annotations

import functools
import re

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine._strategy import FSDPStrategy
from mmengine.device import get_device
from mmengine.model import BaseDataPreprocessor
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import STRATEGIES
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered on rank 0, in CPU memory


@STRATEGIES.register_module()
class FSDP2Strategy(FSDPStrategy):
    """Shards the modules ``shard_modules`` names (one FSDP unit each: its parameters are gathered
    just before its forward and freed after), then the rest of the model as the root unit.

    Args:
        shard_modules: the sharding units, by class name or ``Class.attribute`` (see :func:`shard_model`).
        reshard_after_forward: free each unit's gathered parameters after its forward (ZeRO-3);
            ``False`` keeps them until the backward (ZeRO-2: less communication, more memory).
        **kwargs: mmengine strategy arguments (work_dir, env_kwargs, ...).
    """

    def __init__(self, *, shard_modules: tuple[str, ...] | list[str] = ('LaPEBlock.pe_norm', 'LaPEBlock'),
                 reshard_after_forward: bool = True, **kwargs):
        for unsupported in ('model_wrapper', 'state_dict_cfg', 'activation_checkpointing', 'skip_init_weights'):
            if unsupported in kwargs:
                raise ValueError(f"FSDP2Strategy: '{unsupported}' is an option of mmengine's FSDPStrategy "
                                 f'(FSDP1), not of this one; remove it from the strategy config')
        super().__init__(state_dict_cfg='full', **kwargs)
        if not shard_modules:
            raise ValueError('FSDP2Strategy: shard_modules is empty; name the block class, e.g. '
                             "shard_modules=('LaPEBlock.pe_norm', 'LaPEBlock')")
        self.shard_modules = tuple(shard_modules)
        self.reshard_after_forward = reshard_after_forward

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        """Shard ``model`` in place over all ranks; one process (``tools/test.py``) keeps it whole."""
        for module in model.modules():
            if isinstance(module, BaseDataPreprocessor):
                module.to(get_device())
        model = model.to(get_device())
        if not self.distributed:
            self.logger.info('FSDP2Strategy without a process group: the model is not sharded')
            return model
        # Ranks may have initialised differently (a seed derived from the rank, a random init
        # outside torch's generator): start from rank 0's weights, as DDP does.
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)
        mesh = init_device_mesh(torch.device(get_device()).type, (self.world_size,))
        units = shard_model(model, mesh, self.shard_modules, self.reshard_after_forward)
        self.logger.info(f'FSDP2: {units} units ({", ".join(self.shard_modules)}) + the root, '
                         f'sharded over {self.world_size} ranks')
        for step in ('val_step', 'test_step'):
            setattr(model, step, _unsharded(model, getattr(model, step), self.reshard_after_forward))
        return model

    def model_state_dict(self) -> dict:
        """The full model state dict on rank 0 (empty elsewhere); a collective call."""
        return get_model_state_dict(self.model, options=FULL)

    def optim_state_dict(self) -> dict:
        """The full optimizer state, keyed by parameter name, on rank 0; a collective call."""
        state = get_optimizer_state_dict(self.model, self.optim_wrapper.optimizer, options=FULL)
        if isinstance(self.optim_wrapper, AmpOptimWrapper):
            state['loss_scaler'] = self.optim_wrapper.loss_scaler.state_dict()
        return state

    def load_model_state_dict(self, state_dict: dict, *, strict: bool = False,
                              revise_keys: list = [(r'^module.', '')]) -> None:  # noqa: B006 (mmengine's signature)
        """Load a full state dict (every rank holds it) into the local shards."""
        for pattern, replacement in revise_keys:
            state_dict = {re.sub(pattern, replacement, k): v for k, v in state_dict.items()}
        set_model_state_dict(self.model, state_dict, options=StateDictOptions(full_state_dict=True, strict=strict))

    def load_optim_state_dict(self, state_dict: dict) -> None:
        if 'loss_scaler' in state_dict:
            self.optim_wrapper.loss_scaler.load_state_dict(state_dict.pop('loss_scaler'))
        set_optimizer_state_dict(self.model, self.optim_wrapper.optimizer, state_dict,
                                 options=StateDictOptions(full_state_dict=True))


def shard_model(model: nn.Module, mesh: DeviceMesh, shard_modules: tuple[str, ...],
                reshard_after_forward: bool = True) -> int:
    """``fully_shard`` the units ``shard_modules`` names, then ``model`` as the root unit (every
    parameter no unit holds); returns the number of units. Works on meta parameters too.

    ``'LaPEBlock'`` names every module of that class, ``'LaPEBlock.pe_norm'`` that attribute of
    each (skipped where it is None). A unit gathers its parameters when its own ``forward`` runs,
    so a child that runs outside the parent's forward must be a unit of its own, sharded first:
    LaPEViT calls each block's ``pe_norm`` from ``block_pos_embed``, before the block's forward.
    """
    classes = [name for name in shard_modules if '.' not in name]
    children = [name.split('.', 1) for name in shard_modules if '.' in name]
    units = [getattr(m, attr) for m in model.modules() for cls, attr in children
             if type(m).__name__ == cls and isinstance(getattr(m, attr, None), nn.Module)]
    units += [m for m in model.modules() if type(m).__name__ in classes]
    if not units:
        raise ValueError(f'FSDP2Strategy: the model has no module {shard_modules}; set strategy.shard_modules '
                         f"to its block class names, e.g. ('LaPEBlock.pe_norm', 'LaPEBlock')")
    for unit in [*units, model]:
        fully_shard(unit, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return len(units)


def _unsharded(model: nn.Module, step, reshard_after_forward: bool):
    """``step`` run with every unit's parameters gathered once and kept for the whole call.

    Ranks then run forwards independently: mmseg's slide inference runs one forward per crop, and
    images of different sizes give the ranks different crop counts, which would otherwise leave the
    ranks waiting in different all-gathers. Every rank makes the same number of ``val_step`` calls
    (mmengine's sampler pads the last batch), so the gathers themselves stay matched."""
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]

    @functools.wraps(step)
    def run(*args, **kwargs):
        for unit in units:
            unit.unshard()
            unit.set_reshard_after_forward(False, recurse=False)
        try:
            return step(*args, **kwargs)
        finally:
            for unit in units:
                unit.reshard()
                unit.set_reshard_after_forward(reshard_after_forward, recurse=False)

    return run
