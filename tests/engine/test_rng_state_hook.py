"""RNGStateHook: a resumed run draws the batches of an uninterrupted one."""
from types import SimpleNamespace

import torch


def _batches():
    """Batches loaded in the main process (num_workers=0): each draws from every global generator."""
    import random
    import numpy as np
    while True:
        yield torch.rand(2), np.random.rand(2), random.random()


def _same(a, b) -> bool:
    import numpy as np
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def _reseed() -> None:
    """What mmengine does when a run starts (resumed or not)."""
    import random
    import numpy as np
    torch.manual_seed(0), np.random.seed(0), random.seed(0)


def test_rng_states_come_back_just_before_the_first_batch_after_the_skipped_ones():
    """Iteration-based resume at iteration 2: the loop skips 2 batches (drawing them), then draws batch 3
    from the states of the checkpoint, even where validation ran between the checkpoint and batch 3."""
    from lape_mm.engine import RNGStateHook
    _reseed()
    hook, checkpoint, unbroken = RNGStateHook(), {}, _batches()
    next(unbroken), next(unbroken)
    hook.before_save_checkpoint(None, checkpoint)
    hook.before_val(None)
    torch.rand(7)  # validation draws too (its dataloader's seed)
    hook.after_val(None)
    expected = next(unbroken), next(unbroken)

    _reseed()
    resumed = RNGStateHook()
    resumed.after_load_checkpoint(None, checkpoint)
    runner = SimpleNamespace(iter=2, train_loop=SimpleNamespace(dataloader_iterator=_batches()))
    resumed.before_train_epoch(runner)
    batches = runner.train_loop.dataloader_iterator
    next(batches), next(batches)  # IterBasedTrainLoop skips the trained batches
    assert all(_same(next(batches), batch) for batch in expected)


def test_rng_states_come_back_at_the_next_epoch_and_not_for_load_from():
    from lape_mm.engine import RNGStateHook
    _reseed()
    hook, checkpoint = RNGStateHook(), {}
    hook.before_save_checkpoint(None, checkpoint)
    expected = next(_batches())
    for iteration, restored in ((8, True), (0, False)):  # a resumed epoch-based run; load_from (a new run)
        _reseed()
        next(_batches())
        hook.after_load_checkpoint(None, checkpoint)
        hook.before_train_epoch(SimpleNamespace(iter=iteration, train_loop=SimpleNamespace()))
        assert _same(next(_batches()), expected) == restored
