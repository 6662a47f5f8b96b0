"""MMoE: Multi-gate Mixture-of-Experts (Ma et al., "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD 2018).

    f_e = expert_e(x), e = 1..E                  (shared experts, MLPs)
    g_t = softmax(W_t x)                          (one gate per task, [E])
    y_t = tower_t(sum_e g_t,e f_e)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.models.multitask.base import MultiTaskModel
from jaxrec.nn import MLP


class MMoE(MultiTaskModel):
    """`batch -> outputs [B, T]`: E shared experts, a softmax gate and a tower per task."""

    num_experts: int = 4
    expert: Sequence[int] = (64,)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        x = self.inputs(batch)
        experts = jnp.stack([MLP(self.expert, dropout=self.dropout, name=f"expert_{e}")(x, train)
                             for e in range(self.num_experts)], axis=1)                    # [B, E, H]
        gates = [nn.softmax(nn.Dense(self.num_experts, name=f"task_{t}_gate")(x)) for t in range(self.num_tasks)]  # [B, E]
        return self.towers([jnp.einsum("be,beh->bh", g, experts) for g in gates], train)
