"""GIN on MovieLens-100K with behaviours: the history enriched by 2-hop attention diffusion over
the item co-occurrence graph of the training split, then target attention (jaxrec.models.ctr.gin)."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None
    c.dataset.variant = "history"
    c.model.name = "gin"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    c.model.hops = 2
    c.model.top_n = 10
    c.model.window = 5
    return c
