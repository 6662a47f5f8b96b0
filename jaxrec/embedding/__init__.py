"""Embedding tables: the embedding plan (`plan`), the shared lookup layer, row-wise sparse training
(`rowwise`, `sparse_optim`), row sharding over a mesh, and fixed-capacity dynamic vocabularies."""

from jaxrec.embedding.plan import ROWS, STACKED, EmbeddingPlan, LayerPlan, StackLayout, embedding_plan, make_plan, plan_layer
from jaxrec.embedding.layer import AUX_LOSSES, COUNTERS, EMBEDDING, LOOKUP_IDS, EmbeddingLayer, apply_capacity, embedding_layer, embedding_layouts, field_names, pool, table_name

__all__ = ["AUX_LOSSES", "COUNTERS", "EMBEDDING", "LOOKUP_IDS", "ROWS", "STACKED", "EmbeddingLayer", "EmbeddingPlan", "LayerPlan",
           "StackLayout", "apply_capacity", "embedding_layer", "embedding_layouts", "embedding_plan", "field_names", "make_plan",
           "plan_layer", "pool", "table_name"]
