"""Embedding tables: the shared lookup layer, row-wise sparse optimizers, row sharding over a
mesh, and fixed-capacity dynamic vocabularies."""

from jaxrec.embedding.layer import EMBEDDING, LOOKUP_IDS, ROWS, STACKED, EmbeddingLayer, StackLayout, embedding_layouts, pool, table_name

__all__ = ["EMBEDDING", "LOOKUP_IDS", "ROWS", "STACKED", "EmbeddingLayer", "StackLayout", "embedding_layouts", "pool", "table_name"]
