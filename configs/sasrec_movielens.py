"""SASRec on MovieLens-100K next-item recommendation (`jaxrec.data.sequential`): each user's 100K
ratings in time order, leave-one-out (last item test, second-to-last valid, every earlier prefix a
train example, at most 50 history items), full ranking over all 1,682 items; HR@{1,5,10},
NDCG@{5,10}; early stopping on valid NDCG@10.

RecBole's SASRec defaults (recbole/properties/model/SASRec.yaml and overall.yaml): 2 layers,
2 heads, hidden 64, inner 256, hidden dropout 0.5, attention-probability dropout 0.5, gelu,
LayerNorm eps 1e-12, N(0, 0.02) init of every embedding and Dense kernel (zero biases), CE loss,
Adam lr 1e-3, train batch 2048, max_seq_length 50, up to 300 epochs with early stopping after
10 epochs without improvement (RecBole's valid_metric is MRR@10; here NDCG@10)."""

from jaxrec.train.config import default_config

MAX_HISTORY = 50


def get_config():
    c = default_config()
    c.dataset.name = "sequential"
    c.dataset.source = "movielens"
    c.dataset.max_history = MAX_HISTORY
    c.model.name = "sasrec"
    c.model.width = 64
    c.model.depth = 2
    c.model.num_heads = 2
    c.model.mlp_width = 256
    c.model.dropout = 0.5
    c.model.attention_dropout = 0.5
    c.model.init_scale = 0.02
    c.model.dense_init = "normal"
    c.model.max_len = MAX_HISTORY
    c.task.name = "next_item"
    c.optimizer.name = "adam"
    c.optimizer.lr = 1e-3
    c.train.batch_size = 2048
    c.train.num_epochs = 300
    c.train.eval_batch_size = 1024
    c.train.eval_steps_per_call = 1
    c.early_stopping.metric = "ndcg@10"
    c.early_stopping.mode = "max"
    c.early_stopping.patience = 10
    return c
