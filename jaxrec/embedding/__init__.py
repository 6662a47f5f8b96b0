"""Embedding tables and lookup (see `layer.py`)."""

from jaxrec.embedding.layer import EMBEDDING, EmbeddingLayer, pool

__all__ = ["EMBEDDING", "EmbeddingLayer", "pool"]
