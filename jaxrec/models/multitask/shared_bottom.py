"""Shared-bottom multi-task model (Caruana, "Multitask Learning", Machine Learning 1997):
h = MLP_bottom(concat_f e_f); y_t = tower_t(h) for each task t."""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.models.multitask.base import MultiTaskModel
from jaxrec.nn import MLP


class SharedBottom(MultiTaskModel):
    """`batch -> outputs [B, T]`: one shared bottom MLP, one tower MLP per task."""

    bottom: Sequence[int] = (128, 64)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        h = MLP(self.bottom, dropout=self.dropout, name="bottom")(self.inputs(batch), train)
        return self.towers([h] * self.num_tasks, train)
