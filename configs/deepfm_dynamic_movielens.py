"""DeepFM on MovieLens-100K with user and item ids read as raw keys through dynamic
vocabularies (fixed-capacity hash tables that admit ids while training: RecIS / DeepRec
feature admission and eviction), row-wise lazy Adam on the tables; otherwise the reference
setup. Admission and eviction: --config.dataset.dynamic_min_count=3
--config.dataset.dynamic_steps_to_live=2000; the counts are in metrics.json `train_counters`."""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None
    c.dataset.variant = "dynamic"
    c.dataset.dynamic_min_count = 1
    c.dataset.dynamic_steps_to_live = 0
    c.model.name = "deepfm"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    c.sparse_optimizer.rowwise = True
    return c
