"""Graphs built from the training split, as edge lists for `segment_sum` message passing.

`cooccurrence_graph`: items are nodes; two items are linked when one user interacted with
both within `window` consecutive events (in time order), weighted by how often; each node
keeps its `top_n` heaviest links (GIN's neighbour query, notes §9 [I]: window, top-n).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class EdgeList:
    """Directed edges `senders[e] -> receivers[e]` with `weights[e]` over `num_nodes` nodes (each
    undirected link appears both ways)."""

    senders: np.ndarray
    receivers: np.ndarray
    weights: np.ndarray
    num_nodes: int

    def neighbours(self, node: int) -> dict[int, float]:
        """`{sender: weight}` of the edges into `node`."""
        m = self.receivers == node
        return dict(zip(self.senders[m].tolist(), self.weights[m].tolist()))


def cooccurrence_graph(users: np.ndarray, timestamps: np.ndarray, items: np.ndarray, num_items: int,
                       window: int = 5, top_n: int = 10) -> EdgeList:
    """Item co-occurrence graph of events `[N]` (user, time, item row id; 0 = unknown, left out).

    Pairs of one user's events at most `window` positions apart in time order count once per
    occurrence (both directions); each receiver keeps its `top_n` heaviest senders (ties by
    sender id). Self-pairs (a re-rated item) are dropped.
    """
    order = np.lexsort((timestamps, users))
    u, it = users[order], items[order]
    pairs = []
    for d in range(1, window + 1):
        same = u[d:] == u[:-d]
        a, b = it[:-d][same], it[d:][same]
        keep = (a != b) & (a > 0) & (b > 0)
        pairs += [np.stack([a[keep], b[keep]], 1), np.stack([b[keep], a[keep]], 1)]
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    key = pairs[:, 0].astype(np.int64) * num_items + pairs[:, 1]
    uniq, counts = np.unique(key, return_counts=True)
    senders, receivers = uniq // num_items, uniq % num_items
    rank = np.lexsort((senders, -counts, receivers))             # per receiver: heaviest first
    senders, receivers, counts = senders[rank], receivers[rank], counts[rank]
    first = np.searchsorted(receivers, receivers, side="left")
    keep = np.arange(len(receivers)) - first < top_n
    return EdgeList(senders[keep].astype(np.int32), receivers[keep].astype(np.int32), counts[keep].astype(np.float32), num_items)
