"""Differentiable operators: superpixel pooling."""

from .superpixel_pool import segment_mean, superpixel_pool

__all__ = ["segment_mean", "superpixel_pool"]
