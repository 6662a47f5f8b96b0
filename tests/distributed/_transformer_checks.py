"""Tensor- and data-parallel GPT on 8 CPU devices equals one device, run in a subprocess.

    python tests/distributed/_transformer_checks.py 8x1 4x2 1x8      (or 8x1:mha: one config;
                                                        trainer:2x4: train.py's loop on that mesh)

For each `(data)x(model)` mesh: parameters placed by their logical axis names
(`jaxrec.mesh.LOGICAL_RULES`: heads, kv heads, FFN width and vocabulary over `model`), the batch
over `data`; the forward logits and one SGD-with-momentum train step (loss, every updated parameter
and the momentum, i.e. the gradient) must equal the single-device run to 1e-5. Also checks that the placement really
splits: the query kernel's heads dimension is on the `model` axis. Prints `ok ...`
lines and ends with `ALL CHECKS PASSED` (exit 0) or `N CHECK(S) FAILED` (exit 1).
"""

from __future__ import annotations

import os
import sys
import traceback

_flag = "--xla_force_host_platform_device_count=8"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from jaxrec.mesh import logical_shardings, make_mesh  # noqa: E402
from jaxrec.models.text import GPT  # noqa: E402

TOL = 1e-5
CONFIGS = {
    "mha": dict(vocab_size=64, width=64, depth=2, num_heads=8, max_len=16),
    "gqa_moe": dict(vocab_size=64, width=64, depth=2, num_heads=8, num_kv_heads=2, max_len=16, num_experts=4,
                    activation="swiglu", norm="rmsnorm", tie_embeddings=False),
}


def run(model, params, tokens, tx):
    """A train step `(params, opt) -> (loss, logits, params, opt)` over `tokens` (a closure constant)."""
    def loss_fn(p):
        logits, sown = model.apply({"params": p}, {"tokens": tokens}, mutable=["losses"])
        aux = sum(jnp.sum(t) for t in jax.tree.leaves(sown))
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean() + aux, logits

    def step(p, opt):
        (loss, logits), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
        updates, opt = tx.update(g, opt, p)
        return loss, logits, optax.apply_updates(p, updates), opt

    return step


def check(shape: tuple[int, int], name: str) -> list[str]:
    model = GPT(**CONFIGS[name])
    tokens = jax.random.randint(jax.random.key(0), (8, 13), 0, 64)
    boxed = model.init(jax.random.key(1), {"tokens": tokens})
    params = nn.unbox(boxed)["params"]
    tx = optax.sgd(0.5, momentum=0.9)  # updates linear in the gradient (Adam would amplify float noise in ~0 gradients)
    ref = jax.jit(run(model, params, tokens, tx))(params, tx.init(params))

    mesh = make_mesh(shape)
    names = nn.get_partition_spec(boxed)["params"]
    shardings = logical_shardings(names, params, mesh)
    placed = jax.tree.map(jax.device_put, params, shardings)
    opt = tx.init(placed)  # slots follow their parameters' shardings
    batch = jax.device_put(tokens, NamedSharding(mesh, P("data")))
    got = jax.jit(run(model, params, batch, tx))(placed, opt)
    fails = []
    for label, a, b in (("loss", ref[0], got[0]), ("logits", ref[1], got[1])):
        err = float(jnp.max(jnp.abs(a - b)))
        (fails.append if err > TOL else print)(f"{'FAIL' if err > TOL else 'ok'} {shape} {name} {label}: max |diff| {err:.2e}")
    for label, a, b in (("params", ref[2], got[2]), ("opt_state", ref[3], got[3])):
        err = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        (fails.append if err > TOL else print)(f"{'FAIL' if err > TOL else 'ok'} {shape} {name} updated {label}: max |diff| {err:.2e}")
    spec = placed["block_0"]["attention"]["query"]["base"]["kernel"].sharding.spec
    want = P(None, "model", None)
    (print if tuple(spec) == tuple(want) else fails.append)(
        f"{'ok' if tuple(spec) == tuple(want) else 'FAIL'} {shape} {name} query kernel placed {spec}")
    return fails


def check_trainer(shape: tuple[int, int]) -> list[str]:
    """train.py's loop on a mesh (`mesh.shape`): the GPT's weights placed by their logical names
    (tensor parallel over `model`), one epoch: the same valid/test perplexity as on one device."""
    import tempfile
    from pathlib import Path

    from jaxrec.train.config import default_config
    from jaxrec.train.loop import train_and_evaluate

    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    words = "in the beginning god created the heaven and the earth and it was good".split()
    (tmp / "corpus.txt").write_text("\n\n".join(" ".join(rng.choice(words, 50)) for _ in range(40)))

    def config(mesh):
        c = default_config()
        c.dataset = {"name": "text", "corpus": "file", "path": str(tmp / "corpus.txt"), "vocab_size": 300, "context": 16}
        c.model = {"name": "gpt", "vocab_size": 320, "width": 32, "depth": 1, "num_heads": 4, "mlp_width": 64, "max_len": 16}
        c.task.name, c.optimizer.lr, c.optimizer.name = "lm", 0.01, "adam"
        c.train.batch_size, c.train.eval_batch_size, c.train.num_epochs, c.train.progress_bar = 8, 8, 1, False
        c.early_stopping.metric, c.early_stopping.mode = "perplexity", "min"
        c.mesh.shape = mesh
        return c

    from jaxrec.train import experiment

    state = experiment.build(config(shape)).init_state()
    fails = []
    for what, tree in (("param", state.params), ("adam mu", state.opt_state)):
        leaf = next(x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
                    if "query" in jax.tree_util.keystr(p) and "kernel" in jax.tree_util.keystr(p) and x.ndim == 3)
        ok = tuple(leaf.sharding.spec) == (None, "model", None)
        (print if ok else fails.append)(f"{'ok' if ok else 'FAIL'} {shape} trainer query kernel {what} placed {leaf.sharding.spec}")
    one = train_and_evaluate(config(()), tmp / "one")
    many = train_and_evaluate(config(shape), tmp / "mesh")
    for split in ("valid", "test"):
        a, b = one[split]["perplexity"], many[split]["perplexity"]
        err = abs(a - b) / a
        (fails.append if err > TOL else print)(f"{'FAIL' if err > TOL else 'ok'} {shape} trainer {split} perplexity "
                                                f"{b:.6f} vs one device {a:.6f} (rel {err:.1e})")
    return fails


def main(argv: list[str]) -> int:
    fails = []
    for arg in argv or ["8x1", "4x2", "1x8"]:
        if arg.startswith("trainer:"):
            fails += check_trainer(tuple(int(s) for s in arg.split(":")[1].split("x")))
            continue
        mesh, _, only = arg.partition(":")
        shape = tuple(int(s) for s in mesh.split("x"))
        for name in [only] if only else CONFIGS:
            try:
                fails += check(shape, name)
            except Exception:  # noqa: BLE001 - report and go on
                fails.append(f"FAIL {shape} {name}: {traceback.format_exc()}")
    for f in fails:
        print(f)
    print("ALL CHECKS PASSED" if not fails else f"{len(fails)} CHECK(S) FAILED")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
