"""Multi-device checks of `jaxrec.embedding.sharded`, run in a subprocess with 8 CPU devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
        python tests/distributed/_sharded_checks.py 8x1 4x2 1x8

(the flags are added if missing). For each `(data)x(model)` mesh shape and both placements
it prints one `ok ...` line per check, or `FAIL ...` with the reason, and ends with
`ALL CHECKS PASSED` (exit 0) or `N CHECK(S) FAILED` (exit 1). The test
`tests/distributed/test_sharded_lookup.py` launches it: the device count must be forced
before JAX starts, and the pytest process has already started JAX with one device.
"""

from __future__ import annotations

import os
import sys
import traceback

NUM_DEVICES = 8
_flag = f"--xla_force_host_platform_device_count={NUM_DEVICES}"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import functools  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxrec.mesh import batch_sharding, make_mesh  # noqa: E402
from jaxrec.embedding.layer import pool  # noqa: E402
from jaxrec.embedding.sharded import (RowSharding, shard_table, sharded_bag_lookup, sharded_lookup,  # noqa: E402
                                      table_sharding, unshard_table)

V = 1003          # not divisible by 8: R = 126, 5 padding rows
D = 16
B = 16            # divisible by every data-axis size tried (8, 4, 1)
F = 5
L = 7
TOL = 1e-6

failures: list[str] = []


def check(name: str):
    """Runs one check; records a failure instead of stopping."""
    def wrap(fn):
        try:
            detail = fn()
            print(f"ok   {name}" + (f"  ({detail})" if detail else ""))
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            failures.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3, file=sys.stdout)
        return fn
    return wrap


def max_diff(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def run(shape: tuple[int, int]) -> None:
    mesh = make_mesh(shape)
    n_data, n_model = shape
    S = mesh.size
    R = -(-V // S)
    rng = np.random.default_rng(sum(shape) * 7 + shape[0])
    table = rng.uniform(-1, 1, (V, D)).astype(np.float32)
    ids_np = rng.integers(0, V, (B, F)).astype(np.int32)
    ids_np[0, :3] = [0, V - 1, 1]                               # both ends of the vocabulary
    ids_np[1] = ids_np[2]                                       # duplicate rows: the gradient accumulates
    ids = jax.device_put(ids_np, batch_sharding(mesh))
    bag_np = rng.integers(0, V, (B, L)).astype(np.int32)
    bag_np[3] = bag_np[4]
    len_np = rng.integers(0, L + 1, (B,)).astype(np.int32)
    len_np[:2] = [0, L]                                         # empty bag and full bag
    bag = jax.device_put(bag_np, batch_sharding(mesh))
    lengths = jax.device_put(len_np, batch_sharding(mesh))
    w = rng.uniform(-1, 1, (B, F, D)).astype(np.float32)
    wb = rng.uniform(-1, 1, (B, D)).astype(np.float32)
    tag = f"mesh={n_data}x{n_model}"

    for kind in ("contiguous", "mod"):
        rs = RowSharding(kind, S)
        sh = shard_table(table, mesh, kind)
        lookup = jax.jit(functools.partial(sharded_lookup, mesh, vocab_size=V, kind=kind))
        t = f"{tag} kind={kind}"

        @check(f"{t} placement: shape [S*R, D], sharded over ('data','model'), rows where the kind says")
        def _():
            assert sh.shape == (S * R, D), sh.shape
            assert sh.sharding.is_equivalent_to(table_sharding(mesh), 2), sh.sharding
            for d in range(n_data):
                for m in range(n_model):
                    dev = mesh.devices[d, m]
                    s = d * n_model + m
                    local = np.asarray([x.data for x in sh.addressable_shards if x.device == dev][0])
                    logical = s * R + np.arange(R) if kind == "contiguous" else np.arange(R) * S + s
                    want = np.where((logical < V)[:, None], table[np.minimum(logical, V - 1)], 0)
                    assert np.array_equal(local, want), f"device {dev} (shard {s}) holds the wrong rows"

        @check(f"{t} shard/unshard round trip exact (jax and numpy)")
        def _():
            assert np.array_equal(np.asarray(unshard_table(sh, V, kind)), table)
            assert np.array_equal(unshard_table(np.asarray(sh), V, rs), table)
            assert np.array_equal(rs.to_physical(table), np.asarray(sh))
            assert np.array_equal(np.asarray(sh)[rs.physical_index(ids_np, V)], table[ids_np])

        @check(f"{t} sharded_lookup == table[ids]")
        def _():
            out = lookup(sh, ids)
            assert out.shape == (B, F, D)
            assert out.sharding.is_equivalent_to(batch_sharding(mesh), 3), out.sharding
            diff = max_diff(out, table[ids_np])
            assert diff <= TOL, f"max abs diff {diff}"
            return f"max abs diff {diff:.1e}"

        @check(f"{t} ids outside [0, V) read as zeros")
        def _():
            bad = np.array(ids_np)
            bad[:, 0], bad[:, 1] = -1, V
            out = np.asarray(lookup(sh, jax.device_put(bad, batch_sharding(mesh))))  # same shapes: no recompile
            assert not out[:, :2].any()
            assert np.array_equal(out[:, 2:], table[bad[:, 2:]])

        for combiner in ("mean", "sum"):
            @check(f"{t} sharded_bag_lookup({combiner}) == pool(table[ids])")
            def _():
                fn = jax.jit(functools.partial(sharded_bag_lookup, mesh, vocab_size=V, kind=kind, combiner=combiner))
                out = fn(sh, bag, lengths)
                assert out.shape == (B, D)
                assert out.sharding.is_equivalent_to(batch_sharding(mesh), 2), out.sharding
                ref = pool(jnp.asarray(table)[bag_np], jnp.asarray(len_np), combiner)
                diff = max_diff(out, ref)
                assert diff <= TOL, f"max abs diff {diff}"
                assert not np.asarray(out)[0].any(), "empty bag must pool to zeros"
                return f"max abs diff {diff:.1e}"

        @check(f"{t} grad of sharded_lookup == grad of table[ids]")
        def _():
            loss = lambda tb: jnp.sum(sharded_lookup(mesh, tb, ids, V, kind) ** 2 * w)
            loss_ref = lambda tb: jnp.sum(tb[ids_np] ** 2 * w)
            g = jax.jit(jax.grad(loss))(sh)
            assert g.shape == sh.shape
            assert g.sharding.is_equivalent_to(table_sharding(mesh), 2), g.sharding
            g_ref = jax.grad(loss_ref)(jnp.asarray(table))
            diff = max_diff(unshard_table(g, V, kind), g_ref)
            assert diff <= TOL, f"max abs diff {diff}"
            padding = rs.physical_index(np.arange(V, S * R), V)  # the padding rows get no gradient
            assert not np.asarray(g)[padding].any(), "padding rows got a gradient"
            return f"max abs diff {diff:.1e}"

        @check(f"{t} grad of sharded_bag_lookup(mean) == grad of pool(table[ids])")
        def _():
            loss = lambda tb: jnp.sum(sharded_bag_lookup(mesh, tb, bag, lengths, V, kind, "mean") * wb)
            loss_ref = lambda tb: jnp.sum(pool(tb[bag_np], jnp.asarray(len_np), "mean") * wb)
            g = jax.jit(jax.grad(loss))(sh)
            g_ref = jax.grad(loss_ref)(jnp.asarray(table))
            diff = max_diff(unshard_table(g, V, kind), g_ref)
            assert diff <= TOL, f"max abs diff {diff}"
            return f"max abs diff {diff:.1e}"

    @check(f"{tag} clear errors: bad mesh shape, bad batch size, wrong table")
    def _():
        try:
            make_mesh((3, 2))
        except ValueError as e:
            assert "needs 6 devices" in str(e) and "8 are available" in str(e), e
        else:
            raise AssertionError("make_mesh((3, 2)) on 8 devices did not raise")
        sh = shard_table(table, mesh, "mod")
        if n_data > 1:
            try:
                sharded_lookup(mesh, sh, ids_np[: n_data + 1], V, "mod")
            except ValueError as e:
                assert "not divisible by the 'data' axis" in str(e), e
            else:
                raise AssertionError("a batch not divisible by the data axis did not raise")
        try:
            sharded_lookup(mesh, sh, ids, V + S * R, "mod")
        except ValueError as e:
            assert "use shard_table" in str(e), e
        else:
            raise AssertionError("a table of the wrong size did not raise")


def main(argv: list[str]) -> int:
    if jax.device_count() != NUM_DEVICES:
        print(f"FAIL setup: expected {NUM_DEVICES} devices, JAX sees {jax.device_count()} "
              f"({jax.default_backend()}); XLA_FLAGS={os.environ.get('XLA_FLAGS')!r} must be set before JAX starts")
        return 2
    shapes = [tuple(int(x) for x in a.split("x")) for a in argv] or [(8, 1), (4, 2), (1, 8)]
    for shape in shapes:
        run(shape)
    if failures:
        print(f"{len(failures)} CHECK(S) FAILED: " + "; ".join(failures))
        return 1
    print("ALL CHECKS PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
