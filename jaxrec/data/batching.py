"""Seeded host-side batching: numpy in, numpy out.

Training runs many steps per compiled call, so batches come stacked: a *chunk* is K
consecutive batches as arrays `[K, B, ...]`. The epoch's row order is a pure function of
`(seed, epoch)`, so the same seed gives the same batches and a resumed run picks up at any
step without replaying the ones before it.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np


def epoch_order(num_rows: int, seed: int, epoch: int) -> np.ndarray:
    """Row permutation `[num_rows]` of one epoch; depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(num_rows)


def steps_per_epoch(num_rows: int, batch_size: int) -> int:
    """Full batches per epoch (the ragged tail is dropped; a new order each epoch covers it)."""
    return num_rows // batch_size


def train_chunks(
    columns: Mapping[str, np.ndarray],
    batch_size: int,
    steps_per_call: int,
    seed: int,
    epoch: int,
    start_step: int = 0,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yields `(first_step_in_epoch, chunk)` for one shuffled epoch.

    Chunk k holds steps `[k*K, min((k+1)*K, S))` of the epoch as arrays `[K_k, B, ...]`;
    `start_step` skips the steps before it, for resuming: if it is not a multiple of K (a run
    resumed with another `steps_per_call`), the first chunk runs up to the next multiple.
    """
    n = len(next(iter(columns.values())))
    total = steps_per_epoch(n, batch_size)
    if total == 0:
        raise ValueError(f"train split has {n} rows, fewer than one batch of {batch_size} (train.batch_size)")
    order = epoch_order(n, seed, epoch)
    edges = [start_step, *range(start_step - start_step % steps_per_call + steps_per_call, total, steps_per_call), total]
    for first, stop in zip(edges[:-1], edges[1:]):
        k = stop - first
        idx = order[first * batch_size:(first + k) * batch_size]
        yield first, {name: col[idx].reshape((k, batch_size) + col.shape[1:]) for name, col in columns.items()}


def train_stream(
    columns: Mapping[str, np.ndarray],
    batch_size: int,
    steps_per_call: int,
    seed: int,
    start_step: int,
    total_steps: int,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yields `(global_step, chunk)` from `start_step` up to `total_steps`, across epochs.

    The same chunks as `train_chunks` epoch after epoch; a chunk never crosses an epoch end,
    so `global_step % steps_per_epoch` tells where an epoch starts. A `start_step` off the
    chunk edges gives one shorter first chunk.
    """
    n = len(next(iter(columns.values())))
    spe = steps_per_epoch(n, batch_size)
    if spe == 0:
        raise ValueError(f"train split has {n} rows, fewer than one batch of {batch_size} (train.batch_size)")
    epoch, offset = divmod(start_step, spe)
    while epoch * spe < total_steps:
        for first, chunk in train_chunks(columns, batch_size, steps_per_call, seed, epoch, start_step=offset):
            yield epoch * spe + first, chunk
        epoch, offset = epoch + 1, 0


def eval_chunks(columns: Mapping[str, np.ndarray], batch_size: int, steps_per_call: int) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Yields `(chunk, num_valid)` covering every row once, in order.

    Each chunk is `[K, B, ...]`; the last one is zero-padded, and `num_valid` says how many
    of its `K*B` rows are real, so metrics are computed over the exact split.
    """
    n = len(next(iter(columns.values())))
    per_call = batch_size * steps_per_call
    for start in range(0, n, per_call):
        stop = min(start + per_call, n)
        k = -(-(stop - start) // batch_size)
        chunk = {}
        for name, col in columns.items():
            part = col[start:stop]
            pad = k * batch_size - len(part)
            if pad:
                part = np.concatenate([part, np.zeros((pad,) + part.shape[1:], part.dtype)])
            chunk[name] = part.reshape((k, batch_size) + col.shape[1:])
        yield chunk, stop - start
