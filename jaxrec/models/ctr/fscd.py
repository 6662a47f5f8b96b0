"""FSCD: Feature Selection based on feature Complexity and variational Dropout (Ma et al.,
SIGIR 2021, arXiv 2105.07706; notes shared/specs/recsys-methods.md §8, from the official
EasyRec layer).

Each field j has a keep probability delta_j = sigmoid(theta_j) (theta_j = 0: delta = 0.5, as
EasyRec). Training multiplies field j's embedding by a relaxed Bernoulli gate

    z_j = sigmoid((log delta_j - log(1 - delta_j) + log u - log(1 - u)) / tau),  u ~ U(0, 1)

(one u per example and field, tau = 0.1); evaluation uses the raw embeddings. The prior
keep probability falls with the field's cost c_j: theta_j^prior = 1 - sigmoid(c_j), and the
penalty weight alpha_j = log(1 - theta_prior) - log(theta_prior), which equals c_j, so

    L = BCE + lambda * sum_j alpha_j * mean_batch(z_j)

`lambda` (`complexity_weight`, EasyRec's 1) trades effectiveness for cost. Cost [I]:
c_j = gamma_c * complexity_j + gamma_k * log(V_j) / log(max V) + gamma_d * D_j / max D, each
term scaled to [0, 1] (EasyRec feeds raw cardinalities to the sigmoid, and uses `complexity`
where it computed c_j, which the notes read as a bug). After training, fields are ranked by
delta_j and `select_fields` keeps the best that fit a cost budget; a light pre-ranking model
is then retrained on them (`config.fields`). `train.py` records the keep probabilities, the
ranking and the delta > 0.5 selection in `metrics.json` (`model_report`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.data.features import Feature
from jaxrec.embedding import AUX_LOSSES, embedding_layer, field_names
from jaxrec.nn import MLP


def field_costs(features: tuple[Feature, ...], dim: int, complexity: Mapping[str, float] | None = None,
                gammas: tuple[float, float, float] = (1.0, 1.0, 0.0)) -> np.ndarray:
    """c_j `[F]` of the fields (module docstring): gammas = (gamma_c, gamma_k, gamma_d);
    `complexity` per field name (default 1: the same per-field compute)."""
    names = field_names(features)
    fs = {f.name: f for f in features}
    vocab = np.array([max(int(fs[n].vocab_size or 2), 2) for n in names], float)
    comp = np.array([float((complexity or {}).get(n, 1.0)) for n in names])
    dims = np.full(len(names), float(dim))
    g_c, g_k, g_d = gammas
    return g_c * comp / comp.max() + g_k * np.log(vocab) / np.log(vocab.max()) + g_d * dims / dims.max()


def select_fields(names: Sequence[str], keep: np.ndarray, costs: np.ndarray, budget: float) -> list[str]:
    """Fields by descending keep probability, each taken if it still fits the cost budget."""
    chosen, spent = [], 0.0
    for j in np.argsort(-np.asarray(keep), kind="stable"):
        if spent + costs[j] <= budget + 1e-9:
            chosen.append(names[j])
            spent += float(costs[j])
    return chosen


def relaxed_gates(theta: jax.Array, u: jax.Array, temperature: float) -> jax.Array:
    """z = sigmoid((logit(delta) + logit(u)) / tau) with delta = sigmoid(theta) (logit(delta) = theta)."""
    return jax.nn.sigmoid((theta + jnp.log(u) - jnp.log1p(-u)) / temperature)


class FSCD(nn.Module):
    """`batch -> logits [B]`: gated field embeddings into an MLP (a ranking-like interaction model)."""

    features: tuple[Feature, ...]
    embed_dim: int = 16
    hidden: Sequence[int] = (256, 128)
    complexity_weight: float = 1.0
    temperature: float = 0.1
    complexity: tuple[tuple[str, float], ...] = ()   # per-field complexity (name, value); default 1
    gammas: tuple[float, float, float] = (1.0, 1.0, 0.0)
    embed_init_std: float = 1e-4
    tables: tuple = ()
    EMBEDDING_LAYERS = {"embedding": "embed_dim"}  # {layer name: width or its field} (jaxrec.embedding.plan)

    def costs(self) -> np.ndarray:
        """c_j `[F]` of this model's fields (`field_costs`)."""
        return field_costs(self.features, self.embed_dim, dict(self.complexity), tuple(self.gammas))

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        fields = embedding_layer(self, "embedding")(batch)
        theta = self.param("keep_logits", nn.initializers.zeros, (fields.shape[1],))  # delta_j = sigmoid(theta_j)
        if train:
            u = jax.random.uniform(self.make_rng("dropout"), fields.shape[:2], minval=1e-6, maxval=1 - 1e-6)
            z = relaxed_gates(theta, u, self.temperature)
            self.sow(AUX_LOSSES, "fscd_complexity", self.complexity_weight * jnp.sum(jnp.asarray(self.costs()) * z.mean(0)))
            fields = fields * z[..., None]
        return MLP(self.hidden, out_dim=1)(fields.reshape(fields.shape[0], -1), train)[:, 0]


    def report(self, dense_params) -> dict:
        """What `train.py` records (`metrics.json` `model_report`): per-field keep probability and
        cost, the fields ranked by keep probability, and those kept (delta > 0.5) with their cost."""
        names, delta, costs = field_names(self.features), keep_probabilities(dense_params), self.costs()
        kept = [n for n, d in zip(names, delta) if d > 0.5]
        return {"keep": dict(zip(names, delta.round(4).tolist())), "cost": dict(zip(names, costs.round(4).tolist())),
                "ranking": [names[j] for j in np.argsort(-delta, kind="stable")], "selected": kept,
                "selected_cost": float(sum(c for n, c in zip(names, costs) if n in kept))}


def keep_probabilities(params) -> np.ndarray:
    """delta `[F]` from an FSCD model's dense params."""
    return np.asarray(jax.nn.sigmoid(params["keep_logits"]))


