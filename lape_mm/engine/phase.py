"""Which of its runs a Runner is in, for hooks whose ``before_run`` differs between training and testing."""
from mmengine.runner import BaseLoop


def is_training(runner) -> bool:
    """Whether ``runner`` is in ``train()``: it builds its train loop before ``before_run``; ``test()``
    and ``val()`` leave it a config (reading ``runner.train_loop`` would build it, data and all)."""
    return isinstance(runner._train_loop, BaseLoop)
