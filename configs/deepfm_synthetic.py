"""DeepFM on the synthetic planted-interaction generator (200k rows, 10 fields, Zipf ids)."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "synthetic"
    c.dataset.rows = 200_000
    c.dataset.num_fields = 10
    c.dataset.vocab_sizes = 10_000
    c.dataset.interaction_order = 2
    c.dataset.num_interactions = 10
    c.dataset.noise = 0.5
    c.dataset.seed = 0
    c.model.name = "deepfm"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    c.early_stopping.patience = 2
    return c
