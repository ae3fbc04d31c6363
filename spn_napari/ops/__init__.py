"""Differentiable operators: superpixel pooling, and the square superpixel canvas it pools over."""

from .superpixel_pool import label_canvas, segment_mean, superpixel_pool

__all__ = ["label_canvas", "segment_mean", "superpixel_pool"]
