"""APG-DNN on MovieLens-100K with behaviours (dataset.variant='history'; the history is not
read, the content fields are): per-instance generated layers, self-wise condition, rank 8
(jaxrec.models.ctr.apg)."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None
    c.dataset.variant = "history"
    c.model.name = "apg_dnn"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    c.model.rank = 8
    c.model.hypernet_hidden = (64, 32)
    return c
