"""Run with 8 forced CPU devices (see test_sharded_training.py): the same training steps on meshes
(8,1), (4,2), (1,8) equal the single-device run, and a checkpoint saved on 8 devices restores on
1 and 4 with bit-identical parameters and bit-identical predictions."""

import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from jaxrec.data import batching
from jaxrec.data.movielens import load_movielens_100k
from jaxrec.train.checkpointing import to_logical
from jaxrec.train.config import default_config
from jaxrec.train.experiment import build
from flax import serialization

assert jax.device_count() == 8, jax.devices()
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def config(mesh, rowwise, kind="mod"):
    c = default_config()
    c.model.name = "deepfm"
    c.model.embed_dim, c.model.hidden = 8, (32,)
    c.train.steps_per_call = 3
    c.sparse_optimizer.rowwise = rowwise
    c.mesh.shape, c.mesh.table_sharding = mesh, kind
    return c


def logical(exp, tree):
    """Every stacked table (and per-row slot) as logical tables, on the host."""
    rows_for = exp.sharding.rows_for if exp.sharding else None
    return jax.tree.map(np.asarray, to_logical(serialization.to_state_dict(jax.device_get(tree)), exp.layouts, rows_for))


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) if np.size(x) else 0.0
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


ds = load_movielens_100k(sys.argv[1])
_, chunk = next(batching.train_chunks(ds.columns("train"), 1024, 3, 0, 0))
test = {k: v[None, :1024] for k, v in ds.columns("test").items()}

for rowwise in (False, True):
    ref = build(config((), rowwise), ds)
    ref_state, ref_out = ref.train_steps(ref.init_state(), chunk)
    ref_logical = logical(ref, ref_state)
    for mesh, kind in (((8, 1), "mod"), ((4, 2), "contiguous"), ((1, 8), "mod")):
        exp = build(config(mesh, rowwise, kind), ds)
        state, out = exp.train_steps(exp.init_state(), jax.device_put(chunk, exp.batch_sharding))
        tag = f"mesh {mesh} {kind} rowwise={rowwise}"
        table = state.params["sparse"]["embedding"]["stacked"]
        rows = {s.data.shape[0] for s in table.addressable_shards}
        check(len(table.addressable_shards) == 8 and rows == {table.shape[0] // 8},
              f"{tag}: tables row-sharded over all 8 devices ({sorted(rows)} rows each)")
        d = max_diff(logical(exp, state), ref_logical)
        check(d <= 1e-6, f"{tag}: 3 train steps == single device (params and optimizer state, max diff {d:.2e})")
        d = max_diff(out["loss"], ref_out["loss"])
        check(d <= 1e-6, f"{tag}: losses == single device (max diff {d:.2e})")

# Dynamic vocabularies (admission after 2 sightings, eviction after 1 step unseen) on a mesh:
# the same rows admitted, evicted and re-initialised as on one device.
dyn = load_movielens_100k(sys.argv[1], variant="dynamic", dynamic_min_count=2, dynamic_steps_to_live=1)
_, dyn_chunk = next(batching.train_chunks(dyn.columns("train"), 1024, 3, 0, 0))


def adagrad(c):  # Adagrad's slots restart at a non-zero accumulator: a sharper check of the reset than Adam's
    c.sparse_optimizer.name, c.sparse_optimizer.lr = "adagrad", 0.05  # (lazy Adam's first step, g/|g|, amplifies rounding)
    return c


ref = build(adagrad(config((), True)), dyn)
ref_state, ref_out = ref.train_steps(ref.init_state(), dyn_chunk)
exp = build(adagrad(config((4, 2), True)), dyn)
state, out = exp.train_steps(exp.init_state(), jax.device_put(dyn_chunk, exp.batch_sharding))
d = max_diff(logical(exp, state), logical(ref, ref_state))
check(d <= 1e-6, f"dynamic vocab, mesh (4, 2): 3 train steps == single device (tables, slots, vocabularies; max diff {d:.2e})")
check(all(np.array_equal(out[k], ref_out[k]) for k in ref_out if k.startswith("vocab/")) and int(np.sum(out["vocab/user_id/evicted"])) > 0,
      "dynamic vocab, mesh (4, 2): the same admitted / evicted / rejected counts")

# Per-table options on a mesh: user_id row-sharded 'contiguous' with its own optimizer (Adagrad),
# item_id 'contiguous', the rest 'mod' with lazy Adam: three stacks, each sharded its own way.
def per_table(c):
    c.tables = {"user_id": {"sharding": "contiguous", "optimizer": {"name": "adagrad", "lr": 0.05}},
                "item_id": {"sharding": "contiguous"}}
    return c


ref = build(per_table(config((), True)), ds)
ref_state, ref_out = ref.train_steps(ref.init_state(), chunk)
exp = build(per_table(config((4, 2), True, "mod")), ds)
state, out = exp.train_steps(exp.init_state(), jax.device_put(chunk, exp.batch_sharding))
kinds = {s: exp.sharding.rows_for(exp.layouts[("embedding", s)]).kind for s in state.params["sparse"]["embedding"]}
check(kinds == {"stacked": "mod", "stacked_1": "contiguous", "stacked_2": "contiguous"}, f"per-table options: stacks sharded {kinds}")
d = max_diff(logical(exp, state), logical(ref, ref_state))
check(d <= 1e-6, f"per-table options, mesh (4, 2): 3 train steps == single device (max diff {d:.2e})")
with tempfile.TemporaryDirectory() as tmp:
    exp.checkpointer(Path(tmp)).save(3, state, {})
    restored, _ = ref.checkpointer(Path(tmp)).restore(ref.init_state(place=False))
    check(max_diff(logical(ref, restored), logical(exp, state)) == 0.0,
          "per-table options: saved on 8 devices, restored on 1: parameters and slots bit for bit")

# Checkpoint saved on 8 devices restores on 1 and on 4.
with tempfile.TemporaryDirectory() as tmp:
    exp8 = build(config((8, 1), True), ds)
    state8, _ = exp8.train_steps(exp8.init_state(), jax.device_put(chunk, exp8.batch_sharding))
    exp8.checkpointer(Path(tmp)).save(3, state8, {})
    saved = logical(exp8, state8)
    preds8 = np.asarray(exp8.predict(state8.params, jax.device_put(test, exp8.batch_sharding)))
    for mesh in ((), (4, 1)):
        exp = build(config(mesh, True), ds)
        restored, _ = exp.checkpointer(Path(tmp)).restore(exp.init_state(place=False))
        restored = exp.place(restored)
        n = 1 if not mesh else 4
        check(max_diff(logical(exp, restored), saved) == 0.0, f"restore on {n} device(s): parameters and slots bit for bit")
        # Each device of the 8-mesh scored 128 rows; score the same 128-row slices here (a chunk of
        # 8 / n batches of 128 n rows), so the dense layers run the same matmul shapes: bit for bit.
        sliced = {k: v.reshape((8 // n, 128 * n) + v.shape[2:]) for k, v in test.items()}
        preds = np.asarray(exp.predict(restored.params, sliced if not mesh else jax.device_put(sliced, exp.batch_sharding)))
        check(np.array_equal(preds.reshape(preds8.shape), preds8), f"restore on {n} device(s): predictions == 8-device "
              f"predictions bit for bit (max diff {float(np.max(np.abs(preds.reshape(preds8.shape) - preds8))):.1e})")
        whole = np.asarray(exp.predict(restored.params, test if not mesh else jax.device_put(test, exp.batch_sharding)))
        d = float(np.max(np.abs(whole - preds8)))  # other batch slices: last-bit matmul blocking differences at most
        check(d <= 1e-6, f"restore on {n} device(s): predictions on 1024-row batches == 8-device (max diff {d:.1e})")

# The whole loop on a mesh (prefetch to sharded chunks, eval, best checkpoint), then eval on one device.
from jaxrec.train.experiment import evaluate_checkpoint  # noqa: E402
from jaxrec.train.loop import train_and_evaluate  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    c = config((4, 2), True)
    c.train.num_epochs, c.train.steps_per_call, c.train.progress_bar = 1, 26, False
    result = train_and_evaluate(c, tmp, dataset=ds)
    check(result["test"]["auc"] > 0.7, f"train_and_evaluate on mesh (4, 2): test auc {result['test']['auc']:.4f}")
    c.mesh.shape = ()
    single = evaluate_checkpoint(tmp, "test", "best", config=c, dataset=ds)
    d = abs(single["auc"] - result["test"]["auc"])
    check(d <= 1e-6, f"its best checkpoint evaluated on one device: same test auc (diff {d:.1e})")

print("ALL CHECKS PASSED" if not failures else f"{len(failures)} FAILED")
sys.exit(1 if failures else 0)
