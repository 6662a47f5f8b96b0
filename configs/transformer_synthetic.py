"""Vanilla transformer over field tokens (AutoInt-style) on the synthetic planted-interaction data of the scaling experiment: 2M rows, 26 fields,
100k ids per field (Zipf 1.1), 20 planted field pairs; width d = embed_dim (sweep 8..128).

Row-wise lazy Adam on the embedding tables (only the rows a batch touches: the tables hold
26 x 100k x d rows). One pass over the data plus one more if validation AUC still improves.
"""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "synthetic"
    c.dataset.rows = 2_000_000
    c.dataset.num_fields = 26
    c.dataset.vocab_sizes = 100_000
    c.dataset.interaction_order = 2
    c.dataset.num_interactions = 20
    c.dataset.noise = 0.5
    c.dataset.seed = 0
    c.model.name = "transformer"
    c.model.embed_dim = 32
    c.model.num_layers = 2
    c.model.num_heads = 2
    c.model.ffn_mult = 2
    c.sparse_optimizer.rowwise = True
    c.train.batch_size = 2048
    c.train.num_epochs = 2
    c.early_stopping.patience = 1
    return c
