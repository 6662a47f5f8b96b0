"""CiUBM (MIM) on MovieLens-100K with behaviours: a content encoder over titles, genres and year,
aligned then fine-tuned on behaviour pairs (C-SFT), frozen, read by a content-interest branch
beside DIN's ID branch (jaxrec.models.ctr.mim)."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None
    c.dataset.variant = "history"
    c.model.name = "ciubm"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    c.model.content_dim = 32
    return c
