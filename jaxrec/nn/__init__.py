"""Reusable neural-network layers."""

from jaxrec.nn.field_transformer import (FieldAttention, FieldFFN, FieldLinear, FieldTransformerBlock,
                                         compose_basis_weights, compose_field_weights)
from jaxrec.nn.layers import MLP, CrossNetV2, Dice, fm_interaction

__all__ = ["MLP", "CrossNetV2", "Dice", "fm_interaction", "FieldAttention", "FieldFFN", "FieldLinear",
           "FieldTransformerBlock", "compose_basis_weights", "compose_field_weights"]
