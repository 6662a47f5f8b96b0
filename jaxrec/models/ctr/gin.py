"""GIN: Graph Intention Network (Li et al., SIGIR 2019, arXiv 2103.16164; notes
shared/specs/recsys-methods.md §9).

The behaviour sequence is enriched by multi-hop diffusion over an item co-occurrence graph,
then read by target attention, trained jointly with the CTR model:

    graph        items linked when one user had both within `window` consecutive train
                 events (training split only), each item keeping its `top_n` heaviest links [I]
    diffusion    h^0 = node embeddings (the model's own [V, D] table), L = `hops` layers of
                 `jaxrec.nn.graph.AttentionAggregation` over the whole graph each step
    behaviours   e'_j = e_j + h^L_{item_j}   (ID embedding enriched by its diffused neighbourhood [I])
    intention    v_U = TargetAttention(e_target, e'_1..L)   (DIN's unit)
    y            MLP([e_1, ..., e_F, v_U])

The whole-graph pass costs O(E D) per step (E = 16,470 edges on MovieLens); a graph too
large for that would sample neighbourhoods instead.
"""

from __future__ import annotations

from typing import ClassVar, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxrec.data.features import Feature
from jaxrec.data.graph import cooccurrence_graph
from jaxrec.embedding import embedding_layer
from jaxrec.models.ctr.din import target_and_history
from jaxrec.models.frozen import Frozen
from jaxrec.nn import MLP
from jaxrec.nn.behaviour import TargetAttention
from jaxrec.nn.graph import AttentionAggregation


class GIN(nn.Module):
    """`batch -> logits [B]`."""

    DATA_FIELDS: ClassVar[tuple[str, ...]] = ("graph",)

    features: tuple[Feature, ...]
    embed_dim: int = 16
    hidden: Sequence[int] = (256, 128)
    attention_hidden: Sequence[int] = (80, 40)
    graph_hidden: Sequence[int] = (32,)
    hops: int = 2
    window: int = 5
    top_n: int = 10
    activation: str = "prelu"
    normalize: str = "softmax"
    target: str = "item_id"
    history: str = "hist_item"
    embed_init_std: float = 1e-4
    tables: tuple = ()
    EMBEDDING_LAYERS = {"embedding": "embed_dim"}  # {layer name: width or its field} (jaxrec.embedding.plan)
    graph: Frozen | None = None  # [3, E]: senders, receivers, weights (from_dataset)

    @classmethod
    def from_dataset(cls, dataset, options: Mapping) -> dict:
        """The co-occurrence graph of the training split (user_id, timestamp, target item)."""
        train = dataset.splits["train"]
        target = options.get("target", "item_id")
        missing = [k for k in ("user_id", "timestamp", target) if k not in train]
        if missing:
            raise ValueError(f"GIN builds its item graph from the train split's user_id, timestamp and {target!r}; "
                             f"missing {missing} (MovieLens: dataset.variant='history')")
        g = cooccurrence_graph(train["user_id"], train["timestamp"], train[target], dataset.feature(target).vocab_size,
                               options.get("window", 5), options.get("top_n", 10))
        return {"graph": Frozen(np.stack([g.senders, g.receivers, g.weights]).astype(np.float32))}

    @nn.compact
    def __call__(self, batch: Mapping[str, jnp.ndarray], train: bool = False) -> jnp.ndarray:
        fields, sequences = embedding_layer(self, "embedding", return_sequences=True)(batch)
        target, history, lengths = target_and_history(self, batch, fields, sequences)
        edges = jnp.asarray(self.graph.value)
        senders, receivers, weights = edges[0].astype(jnp.int32), edges[1].astype(jnp.int32), edges[2]
        num_nodes = next(f.vocab_size for f in self.features if f.name == self.target)
        h = self.param("node_embedding", nn.initializers.normal(0.01), (num_nodes, self.embed_dim))
        for _ in range(self.hops):
            h = AttentionAggregation(self.graph_hidden)(h, senders, receivers, weights)
        enriched = history + h[batch[self.history]]
        intention = TargetAttention(self.attention_hidden, self.activation, self.normalize)(target, enriched, lengths)
        x = jnp.concatenate([fields.reshape(fields.shape[0], -1), intention], -1)
        return MLP(self.hidden, activation=self.activation, out_dim=1)(x, train)[:, 0]
