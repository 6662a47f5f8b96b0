"""PLE: Progressive Layered Extraction (Tang et al., "Progressive Layered Extraction (PLE): A
Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020).

Each extraction level (CGC) has k_t experts per task and k_s shared experts. At level l:

    task t:  h_t^{l+1} = sum gate_t^l(h_t^l) * [experts_t^l(h_t^l), shared^l(h_s^l)]
    shared:  h_s^{l+1} = sum gate_s^l(h_s^l) * [experts_1..T^l, shared^l(h_s^l)]   (not at the last level)

with softmax gates; y_t = tower_t(h_t^L). h^0 = the flattened embeddings for every branch.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxrec.models.multitask.base import MultiTaskModel
from jaxrec.nn import MLP


def _gated(gate_logits: jnp.ndarray, experts: jnp.ndarray) -> jnp.ndarray:
    """softmax(gate_logits [B, K]) mixes experts [B, K, H] -> [B, H]."""
    return jnp.einsum("bk,bkh->bh", nn.softmax(gate_logits), experts)


class PLE(MultiTaskModel):
    """`batch -> outputs [B, T]`: `num_levels` CGC levels, then a tower per task. The last level's
    task experts and gates only feed their task (named `task_<t>_...`); earlier levels' also
    feed the shared gate, so they are shared parameters."""

    num_levels: int = 2
    task_experts: int = 1
    shared_experts: int = 1
    expert: Sequence[int] = (64,)

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        x = self.inputs(batch)
        task_in, shared_in = [x] * self.num_tasks, x
        for level in range(self.num_levels):
            last = level == self.num_levels - 1
            prefix = (lambda t: f"task_{t}_") if last else (lambda t, level=level: f"level{level}_task{t}_")

            def experts(inp, n, name):
                return [MLP(self.expert, dropout=self.dropout, name=f"{name}{k}")(inp, train) for k in range(n)]

            own = [experts(task_in[t], self.task_experts, f"{prefix(t)}expert_") for t in range(self.num_tasks)]
            shared = experts(shared_in, self.shared_experts, f"level{level}_shared_expert_")
            new_task_in = [_gated(nn.Dense(self.task_experts + self.shared_experts, name=f"{prefix(t)}gate")(task_in[t]),
                                  jnp.stack(own[t] + shared, axis=1)) for t in range(self.num_tasks)]
            if not last:
                every = [e for o in own for e in o] + shared
                shared_in = _gated(nn.Dense(len(every), name=f"level{level}_shared_gate")(shared_in), jnp.stack(every, axis=1))
            task_in = new_task_in
        return self.towers(task_in, train)
