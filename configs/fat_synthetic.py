"""FAT (v1) on the synthetic planted-interaction data of the FAT scaling experiment.

Data: 2M rows, 26 fields with Criteo-like vocabularies growing geometrically from 10 to 100k
ids (Zipf 1.1), 10 planted field pairs. Model: width d = embed_dim (swept 8..128), 1 block,
2 heads, FFN 2d (one block keeps the d = 128 point affordable on CPU). Dense Adam 3e-3, batch
1024; row-wise lazy Adam (lr 1e-2) on the tables, which touches only the rows a batch looks up.
One pass over the training split (large CTR models usually overfit in the second).
"""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "synthetic"
    c.dataset.rows = 2_000_000
    c.dataset.num_fields = 26
    c.dataset.vocab_sizes = tuple(round(10 * 10 ** (4 * i / 25)) for i in range(26))  # 10 .. 100,000
    c.dataset.interaction_order = 2
    c.dataset.num_interactions = 10
    c.dataset.noise = 0.5
    c.dataset.seed = 0
    c.model.name = "fat"
    c.model.embed_dim = 32
    c.model.num_layers = 1
    c.model.num_heads = 2
    c.model.ffn_mult = 2
    c.sparse_optimizer.rowwise = True
    c.sparse_optimizer.lr = 1e-2
    c.model.embed_init_std = 1e-2
    c.train.batch_size = 1024
    c.optimizer.lr = 3e-3
    c.train.num_epochs = 1
    return c
