"""Model registry: complete models found by name (`config.model.name`).

Contract: `model.apply(variables, batch, train=...) -> logits [B]`, where `variables` is
`{'params': dense, 'embedding': tables}` (see `jaxrec.train.state.variables`). A model takes
`features` (resolved feature specs) and `tables` (per-table `(name, TableOptions)` pairs);
the trainer fills both. A model declares its embedding layers, `EMBEDDING_LAYERS = {layer
name: width or the field holding it}`, and builds them with `embedding_layer(self, name)`:
the trainer reads the same layers as data (`jaxrec.embedding.plan.embedding_plan`). A model that derives
constants from the training data (GIN's item graph, CiUBM's content vectors) defines
`from_dataset(dataset, options) -> {field: Frozen(...)}` and lists those fields in
`DATA_FIELDS`; they are not config keys. Constants that come from a pre-training stage
(CiUBM's content vectors) are filled by `jaxrec.pretrain` instead, and passed in.

Multi-task models (`jaxrec.models.multitask`) output `[B, T]`; the trainer fills `num_tasks`.

This module is the one door from `jaxrec.train` into the models (an import-linter contract in
pyproject.toml): besides `MODELS` it exports `is_shared` (the multi-task shared-parameter
convention) and the multi-head network of the delayed-feedback methods (`MultiHeadDNN`,
outputs `{head: [B]}`, not in `MODELS`: the streaming task builds it per method family).
"""

from __future__ import annotations

import dataclasses
import difflib

from jaxrec.errors import ConfigError
from jaxrec.models.ctr.apg import APGDCNv2, APGDNN
from jaxrec.models.ctr.dcnv2 import DCNv2
from jaxrec.models.ctr.deepfm import DeepFM
from jaxrec.models.ctr.din import DIN
from jaxrec.models.ctr.dnn import DNN
from jaxrec.models.ctr.fat import FAT, Transformer
from jaxrec.models.ctr.fscd import FSCD
from jaxrec.models.ctr.gin import GIN
from jaxrec.models.ctr.lr import LR
from jaxrec.models.ctr.mim import CiUBM
from jaxrec.models.ctr.multi_head import MultiHeadDNN
from jaxrec.models.generative import NEZHARecommender, TIGERRecommender
from jaxrec.models.multitask import MULTITASK_MODELS, is_shared
from jaxrec.models.seq import SASRec
from jaxrec.models.text import GPT

MODELS = {"lr": LR, "dnn": DNN, "deepfm": DeepFM, "dcnv2": DCNv2, "fat": FAT, "transformer": Transformer, "din": DIN,
          "apg_dnn": APGDNN, "apg_dcnv2": APGDCNv2, "fscd": FSCD, "gin": GIN, "ciubm": CiUBM, "gpt": GPT,
          "sasrec": SASRec, "tiger": TIGERRecommender, "nezha": NEZHARecommender,
          **MULTITASK_MODELS}


def register(name: str, cls) -> None:
    """Adds a model class to the registry so configs can name it."""
    MODELS[name] = cls


def model_options(name: str) -> set[str]:
    """Config keys a model accepts: its dataclass fields, minus the ones the trainer fills."""
    data = set(getattr(MODELS[name], "DATA_FIELDS", ()))
    return {f.name for f in dataclasses.fields(MODELS[name])
            if f.init and f.name not in ("features", "tables", "parent", "name") and f.name not in data}


def build_model(name: str, features: tuple, dataset=None, **kwargs):
    """Instantiates model `name` over resolved feature specs; kwargs are its options. A model
    with `from_dataset` needs `dataset` (its training data) for its data-derived constants,
    unless kwargs give them (its `DATA_FIELDS`)."""
    if name not in MODELS:
        hint = difflib.get_close_matches(name, MODELS, n=1)
        raise ConfigError(f"model.name={name!r} is not a known model{f' (did you mean {hint[0]!r}?)' if hint else ''}; known: {sorted(MODELS)}")
    data_fields = set(getattr(MODELS[name], "DATA_FIELDS", ()))
    unknown = sorted(set(kwargs) - model_options(name) - {"tables"} - data_fields)
    if unknown:
        raise ConfigError(f"unknown config key(s) {['model.' + k for k in unknown]} for model {name!r}; valid: {sorted(model_options(name))}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    if not data_fields <= set(kwargs):  # constants not given: derive them
        if not hasattr(MODELS[name], "from_dataset"):
            raise ConfigError(f"model {name!r} needs {sorted(data_fields - set(kwargs))} from a pre-training stage "
                              f"(jaxrec.pretrain.model_constants)")
        if dataset is None:
            raise ConfigError(f"model {name!r} derives constants from its training data: pass dataset=")
        kwargs.update(MODELS[name].from_dataset(dataset, kwargs))
    return MODELS[name](features=tuple(features), **kwargs)


__all__ = ["MODELS", "MULTITASK_MODELS", "MultiHeadDNN", "build_model", "is_shared", "model_options", "register"]
