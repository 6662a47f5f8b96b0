"""DeepFM on the default MovieLens-100K task with row-wise sparse embedding updates: lazy Adam
(per-row moments and bias correction) on the rows each batch touched, everything else as in
deepfm_movielens.py."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None
    c.model.name = "deepfm"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    c.sparse_optimizer.rowwise = True
    c.sparse_optimizer.bias_correction = "row"
    return c
