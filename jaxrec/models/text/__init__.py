"""Text models: a pre-trained BERT sentence encoder (all-MiniLM-L6-v2 from a Hugging Face folder)."""

from jaxrec.models.text.bert import BertConfig, BertEmbeddings, BertEncoder, l2_normalize, mean_pool, sentence_embedding
from jaxrec.models.text.hf import SentenceEncoder, default_minilm_dir, load_bert_params, load_tokenizer
