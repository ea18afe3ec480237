"""Inference engine: static caches, CUDA-graph decode steps, greedy generation."""

from clsa.engine.decode import Decoder

__all__ = ["Decoder"]
