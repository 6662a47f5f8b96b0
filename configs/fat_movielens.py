"""FAT (v1: per-field projections, field-pair modulation, field FFN) on the default
MovieLens-100K task: d = embedding dim 16, 2 blocks, 2 heads, FFN 4d; the F = 10 tokens are
flattened into an MLP 256-128 head, dropout 0.1. Head and dropout were chosen on the
validation split, against sum pooling with a linear head (a one-off comparison when the
model was added; its figures were typed by hand and are not kept here)."""

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
    c.model.pooling = "flatten"
    c.model.head_hidden = (256, 128)
    c.model.dropout = 0.1
    return c
