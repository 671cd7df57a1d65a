"""The torch.distributed environment of a Slurm task, for the CPU path.

With CUDA, ``--launcher slurm`` is mmengine's ``init_dist('slurm')``, which also picks the task's
GPU (``torch.cuda.set_device``) and so cannot run without one. Without CUDA, tools/launch.py sets
the same variables from this module and starts a gloo process group itself.
"""
from __future__ import annotations

import subprocess
from typing import Mapping

from lape_mm.errors import ConfigError

DEFAULT_PORT_BASE = 15000  # MASTER_PORT = 15000 + job id % 10000 unless set


def first_host(node_list: str) -> str:
    """The first host of a Slurm node list such as ``node[01-04,07]``, as ``scontrol`` expands it."""
    try:
        out = subprocess.run(['scontrol', 'show', 'hostnames', node_list], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise ConfigError(f'cannot expand SLURM_NODELIST={node_list!r} with `scontrol show hostnames` '
                          f'({error}); set MASTER_ADDR to the first node\'s address') from None
    return out.split()[0]


def check_slurm_task(environ: Mapping[str, str]) -> None:
    """ConfigError unless this process is a Slurm task (srun sets its variables); with or without CUDA."""
    missing = [name for name in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST') if name not in environ]
    if missing:
        raise ConfigError(f'--launcher slurm needs the Slurm task variables, but {", ".join(missing)} '
                          f'is not set: start the job with srun (tools/slurm_train.sh), or use --launcher pytorch')


def slurm_dist_env(environ: Mapping[str, str], port: int | None = None) -> dict[str, str]:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT of this Slurm task.

    As mmengine's ``_init_dist_slurm``: rank, world size and local rank from SLURM_PROCID,
    SLURM_NTASKS and SLURM_LOCALID; the master is the node list's first host unless MASTER_ADDR is
    set; the port is ``port`` (``env_cfg.dist_cfg.port``), else MASTER_PORT. One difference: with
    neither, mmengine takes 29500 and we take 15000 + job id % 10000, the same for every task of a
    job, so that the CPU jobs sharing a node do not all want one port.
    """
    check_slurm_task(environ)
    if port is None:
        port = environ.get('MASTER_PORT') or DEFAULT_PORT_BASE + int(environ.get('SLURM_JOB_ID', 0)) % 10000
    return {'RANK': environ['SLURM_PROCID'], 'WORLD_SIZE': environ['SLURM_NTASKS'],
            'LOCAL_RANK': environ.get('SLURM_LOCALID', '0'),
            'MASTER_ADDR': environ.get('MASTER_ADDR') or first_host(environ['SLURM_NODELIST']),
            'MASTER_PORT': str(port)}
