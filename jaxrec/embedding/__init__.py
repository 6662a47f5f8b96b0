"""Embedding tables and lookup (see `layer.py`)."""

from jaxrec.embedding.layer import EMBEDDING, STACKED, EmbeddingLayer, StackLayout, pool, table_name

__all__ = ["EMBEDDING", "STACKED", "EmbeddingLayer", "StackLayout", "pool", "table_name"]
