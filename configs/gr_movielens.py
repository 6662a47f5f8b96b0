"""TIGER-style generative retrieval on MovieLens-100K next-item recommendation: the protocol of
`configs/sasrec_movielens.py` (leave-one-out, full ranking over all 1,682 items; HR@{1,5,10},
NDCG@{5,10}; early stopping on valid NDCG@10), items as semantic IDs.

Semantic IDs (`jaxrec.pretrain.semantic_ids.sid_constants`, run before training): all-MiniLM-L6-v2
vectors of each item's "title. Genres: .. Year: .." quantised by balanced RQ-KMeans into 3 levels
of 32 codes, plus a unique level (codes (c1, c2, c3, u)). The model (`jaxrec.models.generative`,
'tiger'): a decoder-only GPT over the SID tokens of the last `max_history` items (TIGER keeps 20),
trained with teacher forcing on the target's 4 tokens; evaluation decodes with a beam of 20
constrained to real items (hash-set verifier) and ranks the target by its beam position.

Backbone sizes follow SASRec's (width 64, 2 layers, 2 heads, inner 256); dropout 0.1, Adam 1e-3,
batch 256 (the generative models see 4 tokens per item: a smaller batch than SASRec's 2048 keeps
the steps per epoch useful). These are starting points, not tuned values: the benchmark
(`benchmarks/generative_retrieval.py`) chooses on valid.
"""

from jaxrec.train.config import default_config

MAX_HISTORY = 20


def get_config():
    c = default_config()
    c.dataset.name = "sequential"
    c.dataset.source = "movielens"
    c.dataset.max_history = MAX_HISTORY
    c.model.name = "tiger"
    c.model.width = 64
    c.model.depth = 2
    c.model.num_heads = 2
    c.model.mlp_width = 256
    c.model.dropout = 0.1
    c.model.sid_source = "text"
    c.model.sid_levels = 3
    c.model.sid_codebook_size = 32
    c.model.sid_balanced = True
    c.model.sid_method = "rq_kmeans"
    c.model.sid_seed = 0
    c.task.name = "generative"
    c.task.beam_width = 20
    c.optimizer.name = "adam"
    c.optimizer.lr = 1e-3
    c.train.batch_size = 256
    c.train.num_epochs = 30
    c.train.eval_batch_size = 256
    c.train.eval_steps_per_call = 1
    c.early_stopping.metric = "ndcg@10"
    c.early_stopping.mode = "max"
    c.early_stopping.patience = 5
    return c
