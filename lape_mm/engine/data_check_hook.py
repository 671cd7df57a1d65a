"""Check a run's datasets when it starts, in every launcher that builds a Runner from the config."""
from __future__ import annotations

from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop

from ..datasets import SAMPLED_FILES, DatasetError, check_dataset, check_same_classes


def model_num_classes(model) -> int | None:
    """How many classes the model predicts, where its head says so: mmseg's ``decode_head``, mmdet's
    ``roi_head.bbox_head`` or ``bbox_head``, mmpretrain's ``head``; None for other models."""
    model = model.module if is_model_wrapper(model) else model
    heads = (getattr(model, 'decode_head', None), getattr(getattr(model, 'roi_head', None), 'bbox_head', None),
             getattr(model, 'bbox_head', None), getattr(model, 'head', None))
    return next((head.num_classes for head in heads if isinstance(getattr(head, 'num_classes', None), int)), None)


@HOOKS.register_module()
class DataCheckHook(Hook):
    """Check the datasets of the loops the Runner has built (train and val when training, test when testing)
    with :func:`lape_mm.datasets.check_dataset`, before any weight is initialised, loaded or trained:
    mmengine calls ``before_run`` right after building them. Rank 0 reads the files and every rank raises
    its :class:`DatasetError`, so none waits for the others.

    Args:
        sample: images (and label maps) decoded per dataset, evenly spread; None decodes all. Listings,
            file sizes, labels and annotation files are checked whole either way.
    """

    priority = 'VERY_HIGH'

    def __init__(self, sample: int | None = SAMPLED_FILES) -> None:
        self.sample = sample

    def before_run(self, runner) -> None:
        message = [None]
        if is_main_process():
            try:
                self.check(runner)
            except DatasetError as err:
                message = [str(err)]
        broadcast_object_list(message)
        if message[0] is not None:
            raise DatasetError(message[0])

    def check(self, runner) -> None:
        loops = {name: getattr(runner, f'_{name}_loop') for name in ('train', 'val', 'test')}
        datasets = {name: loop.dataloader.dataset for name, loop in loops.items() if isinstance(loop, BaseLoop)}
        if 'train' in datasets and 'val' in datasets:
            check_same_classes(datasets['train'], datasets['val'])
        num_classes = model_num_classes(runner.model)
        for name, dataset in datasets.items():
            check_dataset(dataset, num_classes, self.sample, labelled=name != 'test')
