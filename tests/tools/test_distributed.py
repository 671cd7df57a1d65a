"""Beyond one process: Slurm task variables on the CPU and the GPU path, the launch scripts'
command lines, two torchrun "nodes", and a torchrun restart after one rank is killed.

docs/distributed.md describes what these tests check."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, free_port, kill_process_group
from lape_mm.checkpoint import safe_load
from lape_mm.errors import ConfigError
from helpers.tiny_runs import UPERNET, cfg_options, hook_config, hook_env

DIST_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')
SLURM_VARS = ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID', 'SLURM_NODELIST', 'SLURM_JOB_ID')


# --- Slurm: the process group's variables, CPU and GPU ----------------------------------------------

SLURM_TASKS = [  # one task each: a single node; a node list; MASTER_ADDR and MASTER_PORT given
    dict(SLURM_PROCID='1', SLURM_NTASKS='2', SLURM_LOCALID='1', SLURM_NODELIST='vm', SLURM_JOB_ID='7'),
    dict(SLURM_PROCID='5', SLURM_NTASKS='8', SLURM_LOCALID='1', SLURM_NODELIST='n[01-04]', SLURM_JOB_ID='12345'),
    dict(SLURM_PROCID='3', SLURM_NTASKS='4', SLURM_LOCALID='3', SLURM_NODELIST='n[01-04]', SLURM_JOB_ID='9',
         MASTER_ADDR='10.0.0.9', MASTER_PORT='29811'),
]


@pytest.fixture
def slurm_task(request, tmp_path, monkeypatch):
    """The environment of one Slurm task (every variable restored afterwards), with an
    ``scontrol`` that expands ``n[01-04]`` as Slurm does."""
    for name in DIST_VARS + SLURM_VARS:
        monkeypatch.setenv(name, '')  # recorded, so that teardown also removes what the code sets
        monkeypatch.delenv(name)
    for name, value in request.param.items():
        monkeypatch.setenv(name, value)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'scontrol').write_text('#!/bin/sh\n[ "$1" = show ] || exit 1\n'
                                      'case "$3" in "n[01-04]") printf "n01\\nn02\\nn03\\nn04\\n";; *) echo "$3";; esac\n')
    (bin_dir / 'scontrol').chmod(0o755)
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    return request.param


def _record_dist_init(monkeypatch) -> list:
    """Stand-ins for torch.distributed.init_process_group and torch.cuda.set_device that record
    their calls: (backend, the five variables at that moment) and ('set_device', index)."""
    calls = []
    monkeypatch.setattr(torch.distributed, 'init_process_group', lambda backend=None, **kwargs: calls.append(
        (backend, {name: os.environ.get(name) for name in DIST_VARS})))
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: calls.append(('set_device', device)))
    return calls


@pytest.mark.parametrize('slurm_task', SLURM_TASKS, indirect=True)
def test_slurm_task_variables_are_mmengines(slurm_task, monkeypatch):
    """The CPU path's variables equal those mmengine's own Slurm set-up exports, except the
    default port: mmengine's is 29500 for every job, ours one per job."""
    from mmengine.dist.utils import _init_dist_slurm
    from tools.slurm_env import slurm_dist_env
    ours = slurm_dist_env(os.environ)
    calls = _record_dist_init(monkeypatch)
    _init_dist_slurm('gloo')
    assert calls[-1][0] == 'gloo'
    reference = calls[-1][1]
    if 'MASTER_PORT' not in slurm_task:
        assert reference.pop('MASTER_PORT') == '29500'
        assert ours.pop('MASTER_PORT') == str(15000 + int(slurm_task['SLURM_JOB_ID']) % 10000)
    assert ours == reference


@pytest.mark.parametrize('slurm_task', SLURM_TASKS[1:2], indirect=True)
@pytest.mark.parametrize('cuda', [False, True], ids=['cpu', 'cuda'])
def test_slurm_launcher_without_cuda_is_gloo_with_cuda_mmengines(slurm_task, cuda, monkeypatch, tmp_path):
    """tools/train.py --launcher slurm: without CUDA, a gloo group from the task's variables before
    the Runner starts; with CUDA (mocked), nothing of ours: the config reaches mmengine's
    ``init_dist('slurm')`` (what ``Runner.setup_env`` calls), which picks the task's GPU and NCCL."""
    from mmengine.dist import init_dist
    from tools.launch import load_config
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    calls = _record_dist_init(monkeypatch)
    cfg = load_config(str(ROOT / UPERNET.config), launcher='slurm', work_dir=str(tmp_path))
    task = {'RANK': '5', 'WORLD_SIZE': '8', 'LOCAL_RANK': '1', 'MASTER_ADDR': 'n01'}
    if not cuda:
        assert cfg.env_cfg.dist_cfg.backend == 'gloo' and cfg.model_wrapper_cfg.device_ids is None
        assert calls == [('gloo', {**task, 'MASTER_PORT': '17345'})]
        return
    assert calls == [] and cfg.launcher == 'slurm' and 'model_wrapper_cfg' not in cfg
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    monkeypatch.setattr(torch.multiprocessing, 'set_start_method', lambda method: None)  # keep pytest's
    init_dist(cfg.launcher, **cfg.env_cfg.dist_cfg)
    assert calls == [('set_device', 1), ('nccl', {**task, 'MASTER_PORT': '29500'})]


def test_slurm_launcher_outside_slurm_names_the_fix(monkeypatch):
    from tools.slurm_env import slurm_dist_env
    with pytest.raises(ConfigError, match='SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST is not set: start the job '
                                           'with srun'):
        slurm_dist_env({})


# --- the launch scripts' command lines ---------------------------------------------------------------

@pytest.fixture
def script_tree(tmp_path):
    """A copy of tools/*.sh beside a .venv whose python, like ``srun`` and ``python`` on PATH,
    prints its path, the variables the scripts set and its arguments, one a line."""
    tools = tmp_path / 'repo' / 'tools'
    tools.mkdir(parents=True)
    for script in ROOT.glob('tools/*.sh'):
        shutil.copy(script, tools)
    echo = ('#!/bin/sh\necho "$0"\necho "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"\n'
            'echo "LAPE_MM_LAUNCH_TIME=${LAPE_MM_LAUNCH_TIME-unset}"\nprintf "%s\\n" "$@"\n')
    for fake in (tmp_path / 'repo' / '.venv' / 'bin' / 'python', tmp_path / 'bin' / 'srun', tmp_path / 'bin' / 'python'):
        fake.parent.mkdir(parents=True, exist_ok=True)
        fake.write_text(echo)
        fake.chmod(0o755)
    return tmp_path


def _script_args(tree: Path, script: str, *args: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (
        'GPUS', 'GPUS_PER_NODE', 'NTASKS', 'NTASKS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'PYTHON',
        'MAX_RESTARTS', 'NNODES', 'NODE_RANK', 'MASTER_ADDR', 'PORT', 'CUDA_VISIBLE_DEVICES', 'LAPE_MM_LAUNCH_TIME')}
    clean['PATH'] = f'{tree / "bin"}{os.pathsep}{clean["PATH"]}'
    out = subprocess.run(['bash', str(tree / 'repo' / 'tools' / script), *args], env={**clean, **env},
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return out.splitlines()


SLURM_LAYOUTS = [  # (environment, srun's task options); 'no CUDA' means CUDA_VISIBLE_DEVICES=''
    ({}, ['--gres=gpu:8', '--ntasks=8', '--ntasks-per-node=8', '--cpus-per-task=5']),
    ({'GPUS': '2'}, ['--gres=gpu:2', '--ntasks=2', '--ntasks-per-node=2', '--cpus-per-task=5']),
    ({'GPUS': '16', 'GPUS_PER_NODE': '4', 'CPUS_PER_TASK': '8'},
     ['--gres=gpu:4', '--ntasks=16', '--ntasks-per-node=4', '--cpus-per-task=8']),
    ({'GPUS': '0', 'NTASKS': '2', 'CPUS_PER_TASK': '1'}, ['--ntasks=2', '--cpus-per-task=1']),
    ({'GPUS': '0', 'NTASKS': '64', 'NTASKS_PER_NODE': '32'}, ['--ntasks=64', '--ntasks-per-node=32', '--cpus-per-task=5']),
]


@pytest.mark.parametrize('env, layout', SLURM_LAYOUTS)
@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_slurm_scripts_ask_for_gpus_only_when_given_some(script_tree, script, env, layout):
    extra = ['ckpt.pth'] if script == 'slurm_test.sh' else ['work']
    args = _script_args(script_tree, script, 'part', 'job', 'cfg.py', *extra, '--x',
                        **env, SRUN_ARGS='--time=5 --mem=1G')
    python = str(script_tree / 'repo' / 'tools' / '..' / '.venv' / 'bin' / 'python')
    no_cuda = env.get('GPUS') == '0'
    assert args[:3] == [str(script_tree / 'bin' / 'srun'), f'CUDA_VISIBLE_DEVICES={"" if no_cuda else "unset"}',
                        'LAPE_MM_LAUNCH_TIME=unset']
    start = args.index('-p')
    assert args[3:start] == [*layout, '--kill-on-bad-exit=1']
    tool = 'train.py' if script == 'slurm_train.sh' else 'test.py'
    assert args[start:] == ['-p', 'part', '--job-name=job', '--time=5', '--mem=1G', python, '-u',
                            str(script_tree / 'repo' / 'tools' / tool), 'cfg.py',
                            *(['ckpt.pth', '--launcher', 'slurm'] if extra == ['ckpt.pth']
                              else ['--launcher', 'slurm', '--work-dir', 'work']), '--x']


def test_dist_scripts_pass_nodes_and_restarts_to_torchrun(script_tree):
    tools = script_tree / 'repo' / 'tools'
    before = time.time()
    args = _script_args(script_tree, 'dist_train.sh', 'cfg.py', '4', '--x', NNODES='2', NODE_RANK='1',
                        MASTER_ADDR='node0', PORT='29877', GPUS='0')
    assert args[0] == str(tools / '..' / '.venv' / 'bin' / 'python')  # the project's venv, PYTHON unset
    assert args[1] == 'CUDA_VISIBLE_DEVICES=unset' and before <= float(args[2].split('=')[1]) <= time.time()
    assert args[3:] == ['-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1', '--master_addr=node0',
                        '--master_port=29877', '--nproc_per_node=4', str(tools / 'train.py'),
                        'cfg.py', '--launcher', 'pytorch', '--x']
    args = _script_args(script_tree, 'dist_train.sh', 'cfg.py', '4', NNODES='2', NODE_RANK='1',
                        MASTER_ADDR='node0', PORT='29877', MAX_RESTARTS='3')
    assert args[3:] == ['-m', 'torch.distributed.run', '--nnodes=2', '--max-restarts=3', '--rdzv-backend=c10d',
                        '--rdzv-endpoint=node0:29877', '--nproc_per_node=4', str(tools / 'train.py'),
                        'cfg.py', '--launcher', 'pytorch']
    args = _script_args(script_tree, 'dist_test.sh', 'cfg.py', 'ckpt.pth', '2', PYTHON=str(script_tree / 'bin' / 'srun'))
    assert args[0] == str(script_tree / 'bin' / 'srun')  # PYTHON wins
    assert args[3:] == ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0', '--master_addr=127.0.0.1',
                        '--master_port=29500', '--nproc_per_node=2', str(tools / 'test.py'), 'cfg.py', 'ckpt.pth',
                        '--launcher', 'pytorch']
    shutil.rmtree(script_tree / 'repo' / '.venv')  # no venv: `python` from PATH
    assert _script_args(script_tree, 'dist_test.sh', 'cfg.py', 'ckpt.pth', '2')[0] == str(script_tree / 'bin' / 'python')


def _script_error(tree: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """A launch script that refuses its arguments: exit code 2, one line naming the fix, nothing launched."""
    env = {**{k: v for k, v in os.environ.items() if k not in ('GPUS', 'NTASKS_PER_NODE', 'CPUS_PER_TASK')},
           'PATH': f'{tree / "bin"}{os.pathsep}{os.environ["PATH"]}', **env}
    proc = subprocess.run(['bash', str(tree / 'repo' / 'tools' / script), *args], env=env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and proc.stdout == '' and len(proc.stderr.strip().splitlines()) == 1, proc
    assert proc.stderr.startswith(f'{script}: error: '), proc.stderr
    return proc


@pytest.mark.parametrize('script, args, given', [
    ('dist_train.sh', ['cfg.py'], ''), ('dist_train.sh', ['cfg.py', '0'], '0'),
    ('dist_train.sh', ['cfg.py', 'two'], 'two'), ('dist_test.sh', ['cfg.py', 'c.pth'], '')])
def test_dist_scripts_name_a_missing_or_zero_process_count(script_tree, script, args, given):
    err = _script_error(script_tree, script, *args).stderr
    assert 'GPUS must be the number of processes per node, 1 or more' in err and f"got '{given}'" in err


def test_slurm_scripts_refuse_more_cpus_than_a_node_of_the_partition_has(script_tree):
    """The default CPUS_PER_TASK=5 on a partition of 2-CPU nodes would wait in the queue forever."""
    sinfo = script_tree / 'bin' / 'sinfo'
    sinfo.write_text('#!/bin/sh\n[ "$*" = "-h -N -p part -o %c" ] && printf "2\\n2\\n"\n')
    sinfo.chmod(0o755)
    for script, extra in (('slurm_train.sh', 'work'), ('slurm_test.sh', 'ckpt.pth')):
        err = _script_error(script_tree, script, 'part', 'job', 'cfg.py', extra, GPUS='0').stderr
        assert 'ask for 5 CPUs on a node (CPUS_PER_TASK=5), but the nodes of partition part have at most 2' in err
    err = _script_error(script_tree, 'slurm_train.sh', 'part', 'job', 'cfg.py', GPUS='0', NTASKS_PER_NODE='2',
                        CPUS_PER_TASK='2').stderr
    assert 'ask for 4 CPUs on a node (CPUS_PER_TASK=2)' in err
    args = _script_args(script_tree, 'slurm_train.sh', 'part', 'job', 'cfg.py', GPUS='0', CPUS_PER_TASK='2')
    assert '--cpus-per-task=2' in args  # fits: srun runs


# --- torchrun restarts: which checkpoint a restarted group resumes from -------------------------------

def _checkpoint(path: Path, mtime: float) -> str:
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'iter': 2}}, path)
    os.utime(path, (mtime, mtime))
    return str(path)


@pytest.mark.parametrize('launched', [True, False], ids=['dist_train.sh', 'not'])
def test_a_restarted_job_resumes_from_its_own_newest_checkpoint(tmp_path, monkeypatch, launched):
    """Under tools/dist_train.sh (which exports its launch time), a process that finds a checkpoint
    of its own job resumes from it: torchrun restarted it. Other checkpoints are not its job's."""
    from mmengine.config import Config
    from tools.launch import configure_checkpoints
    launch = time.time() - 100
    old = _checkpoint(tmp_path / 'iter_8000.pth', launch - 50)  # an earlier job's, in the same work dir
    (tmp_path / 'last_checkpoint').write_text(old)
    monkeypatch.delenv('LAPE_MM_LAUNCH_TIME', raising=False)
    if launched:
        monkeypatch.setenv('LAPE_MM_LAUNCH_TIME', str(launch))

    def resumed(resume=None):
        cfg = Config(dict(work_dir=str(tmp_path)))
        configure_checkpoints(cfg, resume)
        return cfg.get('load_from') if cfg.get('resume') else None

    assert resumed() is None  # nothing of this job yet: start as the first processes did
    assert resumed('auto') == old  # as asked
    ours = _checkpoint(tmp_path / 'iter_2.pth', launch + 10)
    assert resumed() == (ours if launched else None)  # without dist_train.sh, never unasked
    (tmp_path / 'last_checkpoint').write_text(ours)
    newer = _checkpoint(tmp_path / 'iter_4.pth', launch + 20)  # complete, not yet recorded
    assert resumed() == (ours if launched else None)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_6.pth'))  # deleted: the newest complete one
    assert resumed(old) == (newer if launched else old)


# --- end to end: two nodes, a killed rank -------------------------------------------------------------

def _train_options(data_root: Path) -> list[str]:
    """Four iterations of the tiny UPerNet, a checkpoint every two, no validation."""
    return cfg_options({**UPERNET.options(data_root), 'train_cfg.max_iters': 4, 'default_hooks.checkpoint.interval': 2,
                        'val_dataloader': None, 'val_cfg': None, 'val_evaluator': None})


def _start(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    """tools/dist_train.sh in its own session (so that a failed test can stop it and its workers)."""
    env = {**os.environ, 'PYTHON': sys.executable, 'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': '',
           'PYTHONUNBUFFERED': '1', **env}
    with open(log, 'w') as out:
        return subprocess.Popen(['bash', 'tools/dist_train.sh', *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _finish(procs: list[subprocess.Popen], logs: list[Path], timeout: float = 240) -> str:
    """Wait for every launcher to exit 0 (killing all of them on any failure); their output."""
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            kill_process_group(proc)
    output = '\n'.join(log.read_text() for log in logs)
    assert all(proc.returncode == 0 for proc in procs), output[-6000:]
    return output


def _train(tmp_path: Path, name: str, args: list[str], nodes: int = 1, **env: str) -> tuple[Path, str]:
    """tools/dist_train.sh on ``nodes`` "nodes" of this host (NNODES, NODE_RANK); work dir, output."""
    work = tmp_path / name
    port = str(free_port())
    logs = [tmp_path / f'{name}.{node}.log' for node in range(nodes)]
    procs = []
    try:
        for node, log in enumerate(logs):
            procs.append(_start([*args, '--work-dir', str(work)], log, PORT=port, NNODES=str(nodes),
                                NODE_RANK=str(node), **env))
    finally:
        output = _finish(procs, logs)
    return work, output


def _weights(checkpoint: Path) -> dict:
    return safe_load(checkpoint)['state_dict']


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert not [name for name in wa if not torch.equal(wa[name], wb[name])]


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
    """The tiny UPerNet trained by one node's two processes: its data root and final checkpoint."""
    tmp = tmp_path_factory.mktemp('reference')
    data = UPERNET.make_data(tmp / 'data')
    work, output = _train(tmp, 'one_node', [UPERNET.config, '2', *_train_options(data)])
    assert 'GPU number: 2' in output  # mmengine's world size
    return data, work / 'iter_4.pth'


@pytest.mark.slow
def test_two_nodes_train_as_one_node_with_two_processes(reference_run, tmp_path):
    data, reference = reference_run
    work, output = _train(tmp_path, 'two_nodes', [UPERNET.config, '1', *_train_options(data)], nodes=2)
    assert output.count('GPU number: 2') == 1  # one world of two; only rank 0 logs
    assert_same_weights(work / 'iter_4.pth', reference)


@pytest.mark.slow
def test_a_killed_rank_is_restarted_and_the_run_ends_as_if_never_killed(reference_run, tmp_path):
    """Rank 1 is SIGKILLed after iteration 3 (iter_2.pth written); torchrun restarts the group,
    which resumes from iter_2 (one iteration lost, less than the checkpoint interval)."""
    data, reference = reference_run
    config = hook_config(tmp_path, "dict(type='KillRankOnceHook', iteration=3, rank=1)", UPERNET.config)
    work, output = _train(tmp_path, 'restarted', [config, '2', *_train_options(data)], MAX_RESTARTS='1',
                          **hook_env())
    assert 'failed (exitcode: -9) local_rank: 1' in output, output[-6000:]  # torchrun saw the kill
    assert f'restarted: resuming from {work / "iter_2.pth"}, the newest checkpoint of this job' in output
    assert_same_weights(work / 'iter_4.pth', reference)
