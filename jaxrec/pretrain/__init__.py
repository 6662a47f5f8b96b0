"""Pre-training stages: models trained before (and apart from) the model a config trains, whose
outputs become its data or constants. The experiment builder (`jaxrec.train.experiment`) runs
them in order: data -> cross features -> the model's pre-trained constants -> model.

  cross_features    PCF-GNN (and the explicit statistics baseline): pre-trained cross-feature
                    scores added to the dataset as numeric fields (`config.cross_features`).
  content_encoder   MIM's content encoder (modal alignment + C-SFT): CiUBM's frozen `content`.
  semantic_ids      item semantic IDs (RQ-KMeans / RQ-VAE + a unique level): codes that a
                    generative recommender reads as its item tokens.

This package sits between `train` and `models` (it may use models, layers and data; models
never import it).
"""

from __future__ import annotations

from typing import Callable, Mapping

from jaxrec.pretrain.content_encoder import content_vectors
from jaxrec.pretrain.semantic_ids import sid_constants

# model name -> (dataset, model options) -> {model field: constant}: the model's pre-trained constants.
MODEL_CONSTANTS: dict[str, Callable[..., dict]] = {"ciubm": content_vectors, "tiger": sid_constants,
                                                   "nezha": sid_constants}


def model_constants(name: str, dataset, options: Mapping) -> dict:
    """The pre-trained constants model `name` needs that `options` does not already give (e.g.
    CiUBM's content vectors); `{}` for a model without a pre-training stage."""
    stage = MODEL_CONSTANTS.get(name)
    return {} if stage is None else stage(dataset, options)


__all__ = ["MODEL_CONSTANTS", "model_constants"]
