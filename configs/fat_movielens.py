"""FAT (field-aware transformer, v1: per-field projections, field-pair modulation, field FFN)
on the default MovieLens-100K task: d = embedding dim 16, 2 blocks, 2 heads, FFN 4d."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None
    c.model.name = "fat"
    c.model.embed_dim = 16
    c.model.num_layers = 2
    c.model.num_heads = 2
    c.model.ffn_mult = 4
    return c
