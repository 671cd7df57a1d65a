"""Necks that turn LaPEViT feature maps into pyramids."""
