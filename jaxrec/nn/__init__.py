"""Reusable neural-network layers."""

from jaxrec.nn.layers import MLP, CrossNetV2, fm_interaction

__all__ = ["MLP", "CrossNetV2", "fm_interaction"]
