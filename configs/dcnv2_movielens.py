"""DCNv2 (2 matrix cross layers stacked with MLP 256-128) on the default MovieLens-100K task."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None
    c.model.name = "dcnv2"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    c.model.num_cross = 2
    c.model.structure = "stacked"
    return c
