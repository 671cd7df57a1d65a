from .checks import (DatasetError, check_classification_dataset, check_coco_dataset, check_dataset_cfg,
                     check_seg_dataset, read_image)

__all__ = ['DatasetError', 'check_classification_dataset', 'check_coco_dataset', 'check_dataset_cfg',
           'check_seg_dataset', 'read_image']
