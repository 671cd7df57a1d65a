"""Necks that turn LaPEViT feature maps into pyramids."""
from .simple_fpn import SimpleFPN

__all__ = ['SimpleFPN']
