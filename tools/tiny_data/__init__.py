"""Tiny synthetic data sets in ADE20K, COCO and ImageNet layouts, for the demo and the tests."""
from .ade import is_tiny_ade, make_tiny_ade
from .coco import make_tiny_coco
from .imagenet import make_tiny_imagenet

__all__ = ['is_tiny_ade', 'make_tiny_ade', 'make_tiny_coco', 'make_tiny_imagenet']
