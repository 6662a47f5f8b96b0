"""Losses: the plain ones every task builds on (`basic`) and the delayed-feedback family
(`delayed_feedback`)."""

from jaxrec.losses.basic import binary_cross_entropy, squared_error

__all__ = ["binary_cross_entropy", "squared_error"]
