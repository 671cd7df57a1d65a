from .checks import (DatasetError, check_classification_dataset, check_coco_dataset, check_dataset_cfg,
                     check_seg_dataset, read_image)
from .tiny_ade import make_tiny_ade
from .tiny_coco import make_tiny_coco
from .tiny_imagenet import make_tiny_imagenet

__all__ = ['DatasetError', 'check_classification_dataset', 'check_coco_dataset', 'check_dataset_cfg',
           'check_seg_dataset', 'make_tiny_ade', 'make_tiny_coco', 'make_tiny_imagenet', 'read_image']
