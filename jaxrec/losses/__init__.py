"""Losses: binary cross-entropy on logits (`bce`, the one definition the others build on) and
the delayed-feedback family (`delayed_feedback`)."""

from jaxrec.losses.bce import bce, bce_loss

__all__ = ["bce", "bce_loss"]
