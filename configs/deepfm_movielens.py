"""DeepFM on the default MovieLens-100K task: the reference setup of movielens-task.md
(dim 16, MLP 256-128, Adam 1e-3, batch 1024, early stopping on valid AUC, patience 2)."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None  # None: $JAXREC_DATA_DIR/ml-100k, ~/.cache/jaxrec/ml-100k, or download
    c.model.name = "deepfm"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    return c
