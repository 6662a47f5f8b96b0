"""FSCD on MovieLens-100K (with behaviours' content fields): field gates with the complexity prior.
metrics.json's `model_report` ranks the fields; retrain a light pre-ranking model on the
selection with e.g. `--config.model.name=dnn --config.model.hidden='(64,)' --config.fields='("user_id", "item_id")'`."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None
    c.dataset.variant = "history"
    c.model.name = "fscd"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    c.model.complexity_weight = 0.01
    c.model.temperature = 0.1
    return c
