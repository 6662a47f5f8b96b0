"""Row-sharded embedding tables (`jaxrec.embedding.sharded`) and meshes (`jaxrec.distributed`).

The multi-device checks need 8 forced CPU devices, which must be set before JAX starts;
this pytest process has already started JAX with one, so they run in a subprocess
(`_sharded_checks.py`, one per mesh shape). The rest runs here on whatever devices exist.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.mesh import batch_sharding, make_mesh, replicated
from jaxrec.embedding.sharded import RowSharding, shard_table, sharded_bag_lookup, sharded_lookup, unshard_table
from tests.distributed import run_on_8_cpu_devices

CHECKS = Path(__file__).with_name("_sharded_checks.py")


def test_sharded_lookup_on_8_cpu_devices():
    """Meshes (8, 1), (4, 2), (1, 8) x placements 'contiguous', 'mod': one subprocess (JAX starts once)."""
    shapes = ["8x1", "4x2", "1x8"]
    proc = run_on_8_cpu_devices(CHECKS, *shapes, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "ALL CHECKS PASSED" in proc.stdout, f"{CHECKS.name} failed:\n{out}"
    assert "FAIL" not in proc.stdout, out
    for shape in shapes:  # 8 checks per placement, 2 placements, 1 error check, per mesh
        assert proc.stdout.count(f"ok   mesh={shape} ") == 17, out


def test_row_sharding_placements_by_hand():
    # V = 10 rows on S = 4 shards: R = 3, 2 padding rows (zeros); row r holds the value r + 1.
    table = (np.arange(10, dtype=np.float32) + 1)[:, None]
    contiguous = RowSharding("contiguous", 4).to_physical(table)[:, 0] - 1
    mod = RowSharding("mod", 4).to_physical(table)[:, 0] - 1
    np.testing.assert_array_equal(contiguous, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -1])
    np.testing.assert_array_equal(mod, [0, 4, 8, 1, 5, 9, 2, 6, -1, 3, 7, -1])
    for kind in ("contiguous", "mod"):
        rs = RowSharding(kind, 4)
        phys = rs.to_physical(table)
        np.testing.assert_array_equal(rs.to_logical(phys, 10), table)
        np.testing.assert_array_equal(phys[rs.physical_index(np.arange(10), 10)], table)
        np.testing.assert_array_equal(np.asarray(rs.to_physical(jnp.asarray(table))), phys)  # jax path too
    assert RowSharding("mod", 4).shard_of(np.array([0, 5, 9]), 10).tolist() == [0, 1, 1]
    assert RowSharding("contiguous", 4).shard_of(np.array([0, 5, 9]), 10).tolist() == [0, 1, 3]


def test_row_sharding_rejects_bad_specs():
    with pytest.raises(ValueError, match="kind"):
        RowSharding("range", 4)
    with pytest.raises(ValueError, match="num_shards"):
        RowSharding("mod", 0)
    with pytest.raises(ValueError, match="needs S\\*R"):
        RowSharding("mod", 4).to_logical(np.zeros((10, 2)), 10)
    with pytest.raises(ValueError, match="num_shards"):
        unshard_table(np.zeros((12, 2)), 10, "mod")  # a numpy 'mod' table does not say its S


def test_make_mesh_and_shardings():
    n = jax.device_count()
    mesh = make_mesh()
    assert mesh.axis_names == ("data", "model") and dict(mesh.shape) == {"data": n, "model": 1}
    assert dict(make_mesh((-1, 1)).shape) == {"data": n, "model": 1}
    with pytest.raises(ValueError, match=f"needs {n + 1} devices"):
        make_mesh((n + 1, 1))
    with pytest.raises(ValueError, match="data, model"):
        make_mesh((n,))
    x = jax.device_put(np.zeros((4 * n, 3)), batch_sharding(mesh))
    assert x.sharding.spec[0] == "data"
    assert replicated(mesh).is_fully_replicated


@pytest.mark.parametrize("kind", ["contiguous", "mod"])
def test_single_device_mesh_lookup_and_grad(kind):
    # The same code path on a (1, 1) mesh, in this process.
    mesh = make_mesh((1, 1), jax.devices()[:1])
    rng = np.random.default_rng(0)
    table = rng.normal(size=(11, 4)).astype(np.float32)
    ids = rng.integers(0, 11, (6, 3)).astype(np.int32)
    sh = shard_table(table, mesh, kind)
    np.testing.assert_array_equal(unshard_table(sh, 11, kind), table)
    np.testing.assert_array_equal(jax.jit(sharded_lookup, static_argnums=(0, 3, 4))(mesh, sh, ids, 11, kind), table[ids])
    lengths = np.array([0, 1, 2, 3, 1, 2], np.int32)
    out = sharded_bag_lookup(mesh, sh, ids, lengths, 11, kind, "sum")
    np.testing.assert_allclose(out, np.stack([table[ids[b, :n]].sum(0) for b, n in enumerate(lengths)]), atol=1e-6)
    g = jax.grad(lambda t: jnp.sum(sharded_lookup(mesh, t, ids, 11, kind)))(sh)
    np.testing.assert_array_equal(unshard_table(g, 11, kind), np.bincount(ids.ravel(), minlength=11)[:, None] * np.ones(4))
