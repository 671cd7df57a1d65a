"""tools/slurm_train.sh and tools/slurm_test.sh on a real Slurm cluster without GPUs: the
throwaway one-host cluster of scripts/local_slurm.sh (root only; it installs slurm-wlm and munge
with apt-get when they are missing)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, free_port, run_tool
from helpers.tiny_runs import UPERNET, cfg_options

CLUSTER = ['bash', str(ROOT / 'scripts' / 'local_slurm.sh')]
CANNOT_INSTALL = 3  # local_slurm.sh's exit status when apt-get fails


@pytest.fixture(scope='module')
def slurm_conf():
    """SLURM_CONF of a cluster started for this module and stopped after it."""
    if os.geteuid() != 0:
        pytest.skip('needs root: scripts/local_slurm.sh starts munged, slurmctld and slurmd')
    env = {**os.environ, 'SLURMCTLD_PORT': str(free_port()), 'SLURMD_PORT': str(free_port())}
    started = subprocess.run([*CLUSTER, 'start'], env=env, capture_output=True, text=True, timeout=900)
    if started.returncode == CANNOT_INSTALL:
        pytest.skip(f'slurm-wlm and munge cannot be installed: {started.stderr.strip().splitlines()[-1]}')
    assert started.returncode == 0 and started.stdout.startswith('SLURM_CONF='), started.stdout + started.stderr
    conf = started.stdout.strip().split('=', 1)[1]
    try:
        yield conf
    finally:
        subprocess.run([*CLUSTER, 'stop', str(Path(conf).parent)], timeout=120, check=True)


@pytest.mark.slow
def test_slurm_scripts_train_and_test_with_two_cpu_tasks(slurm_conf, tmp_path):
    """srun: both tasks train one model (world size 2 over gloo) and rank 0 writes the checkpoint;
    sbatch of a script calling tools/slurm_train.sh completes; tools/slurm_test.sh evaluates."""
    data = UPERNET.make_data(tmp_path / 'data')
    options = cfg_options({**UPERNET.options(data), 'train_dataloader.num_workers': 0,
                           'train_dataloader.persistent_workers': False, 'val_dataloader.num_workers': 0,
                           'val_dataloader.persistent_workers': False, 'test_dataloader.num_workers': 0,
                           'test_dataloader.persistent_workers': False})
    env = {'SLURM_CONF': slurm_conf, 'GPUS': '0', 'NTASKS': '2', 'CPUS_PER_TASK': '1', 'SRUN_ARGS': '--label',
           'PYTHON': sys.executable, 'OMP_NUM_THREADS': '1', 'MASTER_PORT': str(free_port())}
    work = tmp_path / 'srun'
    out = run_tool('tools/slurm_train.sh', 'debug', 'lape-train', UPERNET.config, str(work), *options,
                   env=env, timeout=300)
    assert "0: " in out and '1: ' in out  # srun --label: output of task 0 and of task 1
    assert "dist_cfg: {'backend': 'gloo'}" in out and 'GPU number: 2' in out
    assert (work / UPERNET.checkpoint).is_file()

    batch = tmp_path / 'train.sbatch'
    batch.write_text('#!/usr/bin/env bash\n#SBATCH --ntasks=2 --cpus-per-task=1\n'
                     f'GPUS=0 NTASKS=2 CPUS_PER_TASK=1 tools/slurm_train.sh debug lape-batch {UPERNET.config} '
                     f'{tmp_path / "sbatch"} {" ".join(options)}\n')
    out = run_tool('sbatch', '--wait', f'--output={tmp_path / "sbatch.out"}', f'--chdir={ROOT}', str(batch),
                   env={**env, 'MASTER_PORT': str(free_port())}, timeout=300)
    log = (tmp_path / 'sbatch.out').read_text()
    assert 'GPU number: 2' in log and (tmp_path / 'sbatch' / UPERNET.checkpoint).is_file(), log[-6000:]

    out = run_tool('tools/slurm_test.sh', 'debug', 'lape-test', UPERNET.config, str(work / UPERNET.checkpoint),
                   *options, env={**env, 'MASTER_PORT': str(free_port())}, timeout=300)
    assert 'GPU number: 2' in out and 'mIoU' in out
