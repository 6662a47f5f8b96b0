"""Seeded batching: same seed -> same batches; resume at any chunk edge; eval covers every row."""

import numpy as np
import pytest

from jaxrec.data import batching


def cols(n=1000):
    return {"x": np.arange(n), "y": np.arange(n) * 2.0}


def test_same_seed_same_batches_and_epochs_differ():
    a = [c["x"] for _, c in batching.train_chunks(cols(), 64, 4, seed=3, epoch=1)]
    b = [c["x"] for _, c in batching.train_chunks(cols(), 64, 4, seed=3, epoch=1)]
    c = [c["x"] for _, c in batching.train_chunks(cols(), 64, 4, seed=3, epoch=2)]
    d = [c["x"] for _, c in batching.train_chunks(cols(), 64, 4, seed=4, epoch=1)]
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0])
    flat = np.concatenate([x.reshape(-1) for x in a])
    assert len(flat) == 15 * 64 and len(set(flat.tolist())) == len(flat)  # no row twice in an epoch
    assert [x.shape for x in a] == [(4, 64)] * 3 + [(3, 64)]


def test_rows_stay_aligned_across_columns():
    for _, c in batching.train_chunks(cols(), 32, 5, seed=0, epoch=0):
        np.testing.assert_array_equal(c["y"], c["x"] * 2.0)


def test_resume_mid_epoch_gives_the_same_remaining_chunks():
    full = list(batching.train_stream(cols(), 64, 4, seed=1, start_step=0, total_steps=45))
    resumed = list(batching.train_stream(cols(), 64, 4, seed=1, start_step=19, total_steps=45))
    assert [s for s, _ in full] == [0, 4, 8, 12, 15, 19, 23, 27, 30, 34, 38, 42]
    tail = [(s, c) for s, c in full if s >= 19]
    assert [s for s, _ in resumed] == [s for s, _ in tail]
    assert all(np.array_equal(a["x"], b["x"]) for (_, a), (_, b) in zip(resumed, tail))



def test_resume_off_the_chunk_edges_runs_a_short_first_chunk():
    # A run checkpointed at step 3 with K=3, resumed with K=4: steps 3 (one step), then 4, 8, ...
    full = list(batching.train_chunks(cols(), 64, 4, seed=1, epoch=0))
    resumed = list(batching.train_chunks(cols(), 64, 4, seed=1, epoch=0, start_step=3))
    assert [(s, len(c["x"])) for s, c in resumed] == [(3, 1), (4, 4), (8, 4), (12, 3)]
    assert np.array_equal(resumed[0][1]["x"][0], full[0][1]["x"][3])
    assert all(np.array_equal(a["x"], b["x"]) for (_, a), (_, b) in zip(resumed[1:], full[1:]))


def test_eval_chunks_cover_every_row_once_in_order():
    got = []
    for chunk, n in batching.eval_chunks(cols(1000), 128, 3):
        got.append(chunk["x"].reshape(-1)[:n])
        assert chunk["x"].shape[1] == 128
    np.testing.assert_array_equal(np.concatenate(got), np.arange(1000))


def test_too_few_rows_for_a_batch():
    with pytest.raises(ValueError, match="train.batch_size"):
        list(batching.train_chunks(cols(10), 64, 1, 0, 0))
