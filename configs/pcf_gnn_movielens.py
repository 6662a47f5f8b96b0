"""PCF-GNN on MovieLens-100K: a GNN pre-trained on the train split's (user, genre), (user, year),
(item, age), (item, occupation), (item, gender), (item, zip) pair CTRs predicts those cross
features for every row (out-of-fold on train), fed to a DNN as numeric fields
(jaxrec.models.ctr.pcf_gnn). `--config.cross_features.method=explicit` is the statistical baseline."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None
    c.dataset.variant = "history"
    c.model.name = "dnn"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    c.cross_features = {"method": "pcf_gnn", "dim": 16, "layers": 2, "steps": 300, "folds": 2}
    return c
