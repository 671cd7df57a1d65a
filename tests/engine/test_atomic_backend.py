"""AtomicLocalBackend and lape_mm.fileio.atomic_write: a checkpoint is written whole or not at all."""
import os

import pytest
import torch
from mmengine.fileio import get_file_backend
from mmengine.runner.checkpoint import save_checkpoint

from lape_mm.checkpoint import safe_load
from lape_mm.engine import AtomicLocalBackend


ATOMIC = dict(backend='atomic_local')  # what configs/_base_/lape_runtime.py gives the checkpoint hook


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    target = tmp_path / 'iter_1.pth'
    assert isinstance(get_file_backend(str(target), backend_args=ATOMIC), AtomicLocalBackend)
    save_checkpoint({'state_dict': {'w': torch.ones(2)}}, str(target), backend_args=ATOMIC)
    assert torch.equal(safe_load(target)['state_dict']['w'], torch.ones(2))

    def crash(*args):
        raise OSError('disk full')
    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(OSError, match='disk full'):
        save_checkpoint({'state_dict': {'w': torch.zeros(2)}}, str(target), backend_args=ATOMIC)
    assert torch.equal(safe_load(target)['state_dict']['w'], torch.ones(2))  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_1.pth']  # no temporary left


def test_atomic_writes_through_a_symbolic_link_keep_the_link(tmp_path):
    """A work dir's checkpoint may be a link into other storage: the link stays and its target is new."""
    storage, work = tmp_path / 'storage', tmp_path / 'work'
    storage.mkdir(), work.mkdir()
    (storage / 'latest.pth').write_bytes(b'old')
    (work / 'latest.pth').symlink_to(storage / 'latest.pth')
    AtomicLocalBackend().put(b'new', work / 'latest.pth')
    AtomicLocalBackend().put_text('iter_1.pth', work / 'last_checkpoint')
    assert (work / 'latest.pth').is_symlink() and (storage / 'latest.pth').read_bytes() == b'new'
    assert (work / 'last_checkpoint').read_text() == 'iter_1.pth'
    assert sorted(p.name for p in [*storage.iterdir(), *work.iterdir()]) == ['last_checkpoint', 'latest.pth',
                                                                             'latest.pth']


def test_atomic_write_onto_a_folder_is_refused_before_any_work(tmp_path):
    from lape_mm.fileio import atomic_write
    with pytest.raises(IsADirectoryError, match='is a folder'):
        with atomic_write(tmp_path):
            raise AssertionError('the block must not run')
    assert not list(tmp_path.iterdir())
