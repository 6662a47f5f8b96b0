"""Row-wise sparse training updates exactly the rows a batch touched, as the dense path would."""

import jax
import numpy as np

from jaxrec.data import batching
from jaxrec.embedding import StackLayout
from jaxrec.train.experiment import build


def two_runs(small_config, movielens, name, steps=3):
    out = {}
    for rowwise in (False, True):
        c = small_config.copy_and_resolve_references()
        c.optimizer.name = c.sparse_optimizer.name = name
        c.optimizer.lr = c.sparse_optimizer.lr = 0.05
        c.sparse_optimizer.rowwise = rowwise
        c.train.steps_per_call = steps
        exp = build(c, movielens)
        state = exp.init_state()
        _, chunk = next(batching.train_chunks(movielens.columns("train"), 1024, steps, 0, 0))
        before = jax.device_get(state)  # train_steps donates the state
        out[rowwise] = (before, exp.train_steps(state, chunk)[0], chunk)
    return out


def test_rowwise_sgd_equals_dense_sgd(small_config, movielens):
    runs = two_runs(small_config, movielens, "sgd")
    dense, rowwise = runs[False][1], runs[True][1]
    for a, b in zip(jax.tree.leaves(dense.params), jax.tree.leaves(rowwise.params)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


def test_rowwise_adam_touches_only_looked_up_rows(small_config, movielens):
    before, after, chunk = two_runs(small_config, movielens, "adam")[True]
    layout = StackLayout.from_features(movielens.features)
    old = layout.unstack(before.params["sparse"]["embedding"]["stacked"])
    new = layout.unstack(after.params["sparse"]["embedding"]["stacked"])
    for f in movielens.features:
        seen = np.zeros(f.vocab_size, bool)
        seen[np.asarray(chunk[f.name]).reshape(-1)] = True
        changed = np.any(np.asarray(old[f.name]) != np.asarray(new[f.name]), axis=1)
        np.testing.assert_array_equal(changed, seen)  # lazy: untouched rows keep their values


def test_rowwise_learns_like_dense(small_config, movielens, tmp_path):
    from jaxrec.train.loop import train_and_evaluate

    small_config.sparse_optimizer.rowwise = True
    r = train_and_evaluate(small_config, tmp_path, dataset=movielens)
    assert r["test"]["auc"] > 0.75
