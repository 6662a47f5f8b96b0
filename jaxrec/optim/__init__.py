"""Optimisation methods beyond a single optimizer: GBA aggregation (`gba`)."""
