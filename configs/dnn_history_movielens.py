"""DNN on the same MovieLens-100K-with-behaviours data as DIN, without the history (an unpooled
sequence is not a field, so the DNN does not read it): the no-history baseline of docs/results/ctr_zoo.md."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None
    c.dataset.variant = "history"
    c.model.name = "dnn"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    return c
