"""Losses: the plain ones (`basic`: binary cross-entropy on logits, the one definition the
others build on, and squared error) and the delayed-feedback family (`delayed_feedback`)."""

from jaxrec.losses.basic import bce, bce_loss, squared_error

__all__ = ["bce", "bce_loss", "squared_error"]
