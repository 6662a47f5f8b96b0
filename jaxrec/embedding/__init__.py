"""Embedding tables: the shared lookup layer, row-wise sparse optimizers, row sharding over a
mesh, and fixed-capacity dynamic vocabularies."""

from jaxrec.embedding.layer import AUX_LOSSES, COUNTERS, EMBEDDING, LOOKUP_IDS, ROWS, STACKED, EmbeddingLayer, StackLayout, apply_capacity, embedding_layouts, field_names, pool, table_name

__all__ = ["AUX_LOSSES", "COUNTERS", "EMBEDDING", "LOOKUP_IDS", "ROWS", "STACKED", "EmbeddingLayer", "StackLayout", "apply_capacity", "embedding_layouts", "field_names", "pool", "table_name"]
