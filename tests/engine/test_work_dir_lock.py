"""lape_mm.engine.work_dir_lock: one training run per work dir, held by rank 0 while it trains, free the
moment its holder dies."""
import contextlib
import os
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, kill_process_group, run_tool, runner_stub
from helpers.tiny_runs import TINY_SEG as TINY, hook_config, hook_env, small_run_options


def test_second_run_on_a_work_dir_is_refused_naming_the_first(tmp_path):
    from lape_mm.engine.work_dir_lock import WorkDirBusyError, lock_work_dir
    lock = lock_work_dir(str(tmp_path))
    with pytest.raises(WorkDirBusyError, match=f'in use by another training run \\(PID {os.getpid()}\\)'):
        lock_work_dir(str(tmp_path))
    lock.close()
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from lape_mm.engine.work_dir_lock import '
                               'lock_work_dir; l = lock_work_dir(sys.argv[1]); print("locked", flush=True); '
                               'time.sleep(60)', str(tmp_path)],
                              cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)}, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(WorkDirBusyError, match=f'PID {holder.pid}'):
            lock_work_dir(str(tmp_path))
    finally:
        kill_process_group(holder)
    assert lock_work_dir(str(tmp_path)) is not None  # a dead holder does not keep the lock


def test_busy_message_names_the_holder_only_while_it_lives(tmp_path):
    """The lock file can name a process that is gone (e.g. the PID of a killed run): it is not named."""
    from lape_mm.engine.work_dir_lock import LOCK_NAME, WorkDirBusyError, lock_work_dir
    dead = subprocess.Popen([sys.executable, '-c', ''])
    dead.wait(timeout=60)
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from lape_mm.engine.work_dir_lock import lock_work_dir; '
                               'l = lock_work_dir(sys.argv[1]); print("locked", flush=True); time.sleep(60)',
                               str(tmp_path)], cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        (tmp_path / LOCK_NAME).write_text(f'{dead.pid}\n')
        with pytest.raises(WorkDirBusyError, match='in use by another training run;') as busy:
            lock_work_dir(str(tmp_path))
        assert str(dead.pid) not in str(busy.value)
    finally:
        holder.kill()
        holder.wait(timeout=60)


@pytest.mark.slow
def test_a_killed_run_with_persistent_workers_frees_its_work_dir_at_once(tiny_ade, tmp_path):
    """SIGKILL a run whose dataloader workers persist (they outlive it by seconds): its work dir is free
    the moment it is dead, and --resume straight away finishes the run."""
    from lape_mm.engine.work_dir_lock import lock_work_dir
    options = small_run_options(tiny_ade, iters=4, ckpt_interval=1, **{
        'train_dataloader.num_workers': 2, 'train_dataloader.persistent_workers': True,
        'train_cfg.val_interval': 100})
    work = tmp_path / 'work'
    killing = hook_config(tmp_path, "dict(type='KillAtIterHook', iteration=3)")
    env = {**os.environ, **hook_env()}
    with open(tmp_path / 'killed.log', 'w') as log:  # not a pipe: the orphaned workers would hold it open
        run = subprocess.Popen([sys.executable, 'tools/train.py', killing, '--work-dir', str(work), *options],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert run.wait(timeout=600) == -signal.SIGKILL, (tmp_path / 'killed.log').read_text()[-3000:]
        lock_work_dir(str(work)).close()  # within milliseconds of its death, while its workers may live
        out = run_tool('tools/train.py', TINY, '--work-dir', str(work), '--resume', *options)
    finally:
        run.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)  # the orphaned workers
    assert 'resumed' in out.lower() and (work / 'iter_4.pth').exists()


def test_work_dir_lock_is_held_by_rank_0_of_a_training_run_only(tmp_path, monkeypatch):
    from lape_mm.engine import WorkDirLockHook
    from lape_mm.engine import work_dir_lock
    from lape_mm.errors import WorkDirBusyError
    (tmp_path / '.tmp-123iter_2.pth').write_bytes(b'half')  # a save that a kill interrupted
    hook = WorkDirLockHook()
    hook.before_run(runner_stub(tmp_path, training=False))  # runner.test(): no lock, nothing removed
    assert (tmp_path / '.tmp-123iter_2.pth').exists()
    monkeypatch.setattr(work_dir_lock, 'is_main_process', lambda: False)
    hook.before_run(runner_stub(tmp_path))  # rank 1
    work_dir_lock.lock_work_dir(str(tmp_path)).close()  # free
    monkeypatch.setattr(work_dir_lock, 'is_main_process', lambda: True)
    hook.before_run(runner_stub(tmp_path))
    assert not (tmp_path / '.tmp-123iter_2.pth').exists()
    with pytest.raises(WorkDirBusyError, match=str(tmp_path)):
        work_dir_lock.lock_work_dir(str(tmp_path))
    hook.after_run(None)
    work_dir_lock.lock_work_dir(str(tmp_path)).close()  # released
