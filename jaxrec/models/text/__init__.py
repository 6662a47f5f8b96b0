"""Text models: a GPT-style causal LM (`gpt`) and a BERT sentence encoder (`bert`)."""

from jaxrec.models.text.gpt import GPT, init_cache

__all__ = ["GPT", "init_cache"]
