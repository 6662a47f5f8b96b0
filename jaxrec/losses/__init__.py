"""Losses beyond plain cross-entropy: the delayed-feedback family (`delayed_feedback`)."""
