from .checks import DatasetError, check_coco_dataset, check_dataset_cfg, check_seg_dataset
from .tiny_ade import make_tiny_ade

__all__ = ['DatasetError', 'check_coco_dataset', 'check_dataset_cfg', 'check_seg_dataset', 'make_tiny_ade']
