"""DNN (embedding + MLP 256-128) on the default MovieLens-100K task, reference setup."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None
    c.model.name = "dnn"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    return c
