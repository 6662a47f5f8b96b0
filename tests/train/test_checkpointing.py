"""Checkpoints hold logical (unstacked) tables and restore into any stacking, bit for bit."""

import dataclasses

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxrec.data import batching
from jaxrec.train.checkpointing import Checkpointer
from jaxrec.train.experiment import build


def trained(config, dataset, steps=4):
    exp = build(config, dataset)
    state = exp.init_state()
    _, chunk = next(batching.train_chunks(dataset.columns("train"), 1024, steps, 0, 0))
    state, _ = exp.train_steps(state, chunk)
    return exp, state


def test_saved_tables_are_logical_and_restore_into_another_stacking(small_config, movielens, tmp_path):
    small_config.sparse_optimizer.rowwise = True  # per-row Adam slots are stacked too
    small_config.train.steps_per_call = 4
    exp, state = trained(small_config, movielens)
    ckpt = Checkpointer(tmp_path, layouts=exp.layouts)
    ckpt.save(4, state, {"note": "x"})

    raw = ocp.StandardCheckpointer().restore(tmp_path / "4" / "state")
    layout = exp.layouts[("embedding", "stacked")]
    tables = layout.unstack(state.params["sparse"]["embedding"]["stacked"])
    saved = raw["params"]["sparse"]["embedding"]["stacked"]["tables"]
    assert set(saved) == {f.name for f in movielens.features}
    for name, t in tables.items():
        np.testing.assert_array_equal(saved[name], t)  # one [V_t, D] array per logical table
    m_slot = raw["opt_state"]["sparse"]["embedding"]["stacked"]["slots"]["mu"]["tables"]
    assert m_slot["user_id"].shape == (movielens.feature("user_id").vocab_size, small_config.model.embed_dim)

    # Same round trip, bit for bit.
    restored, meta = ckpt.restore(exp.init_state())
    assert meta == {"note": "x"}
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(a, b)

    # A run whose fields come in another order stacks its tables differently, yet reads the same tables.
    other = dataclasses.replace(movielens, features=movielens.features[::-1])
    exp2 = build(small_config, other)
    assert exp2.layouts[("embedding", "stacked")].names != layout.names
    restored2, _ = Checkpointer(tmp_path, layouts=exp2.layouts).restore(exp2.init_state())
    tables2 = exp2.layouts[("embedding", "stacked")].unstack(restored2.params["sparse"]["embedding"]["stacked"])
    for name, t in tables.items():
        np.testing.assert_array_equal(tables2[name], t)
    # The restored run predicts exactly the same logits.
    chunk = {k: v[None, :512] for k, v in movielens.columns("test").items()}
    np.testing.assert_array_equal(exp.predict(state.params, chunk), exp.predict(restored.params, chunk))
