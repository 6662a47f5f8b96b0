"""VALUE's first stage, SFT of query -> bidword rewriting, through train.py (`jaxrec.data.bidwords`:
the MovieLens-100K stand-in for ad data, task 'lm' with the loss on the bidword tokens only).

    python train.py --config configs/value_sft_movielens.py --config.dataset.data_dir=../shared/data/ml-100k

The model is the benchmark's (benchmarks/value_rewriting.py: GPT width 64, 2 layers, BPE 1024 + SEP);
early stopping on the valid NLL of the continuation. Decoding under the weighted trie, the alpha
sweep and DPO/WDPO are the benchmark's (not yet train.py stages). A user's own file:
`--config.dataset.source=file --config.dataset.path=my_rewrites.tsv` (query, bidword, value[, window])."""

from jaxrec.train.config import default_config

VOCAB, CONTEXT = 1024, 64


def get_config():
    c = default_config()
    c.dataset.name = "rewriting"
    c.dataset.source = "movielens"
    c.dataset.vocab_size = VOCAB
    c.dataset.context = CONTEXT
    c.model.name = "gpt"
    c.model.vocab_size = VOCAB + 1  # + SEP
    c.model.width = 64
    c.model.depth = 2
    c.model.num_heads = 2
    c.model.mlp_width = 256
    c.model.max_len = CONTEXT
    c.task.name = "lm"
    c.optimizer.name = "adam"
    c.optimizer.lr = 3e-3
    c.train.batch_size = 64
    c.train.num_epochs = 40
    c.train.eval_batch_size = 256
    c.early_stopping.metric = "nll"
    c.early_stopping.mode = "min"
    c.early_stopping.patience = 3
    return c
