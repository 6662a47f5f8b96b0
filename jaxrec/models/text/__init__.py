"""Text models: a GPT-style causal LM (`gpt`) and a BERT sentence encoder (`bert`, weights from a
Hugging Face folder through `hf`: all-MiniLM-L6-v2 by default)."""

from jaxrec.models.text.bert import BertConfig, BertEmbeddings, BertEncoder, l2_normalize, mean_pool, sentence_embedding
from jaxrec.models.text.gpt import GPT, init_cache
from jaxrec.models.text.hf import SentenceEncoder, default_minilm_dir, load_bert_params, load_tokenizer

__all__ = ["GPT", "init_cache", "BertConfig", "BertEmbeddings", "BertEncoder", "l2_normalize", "mean_pool",
           "sentence_embedding", "SentenceEncoder", "default_minilm_dir", "load_bert_params", "load_tokenizer"]
