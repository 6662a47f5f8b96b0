"""Train throughput of DNN, DeepFM and DCNv2 on MovieLens-100K, against a bare-MLP ceiling.

    python benchmarks/train_throughput.py [--epochs 8] [--batch_sizes 1024 4096]

Each model trains through the library's own path (`jaxrec.train.experiment.build`: host chunks of
a whole epoch, `train_steps` = K steps per compiled call); examples/s is taken per epoch and
the median over epochs 2..N is reported (epoch 1 compiles). In the same run, round-robin
with the models so drift hits all alike, the *ceiling* trains the bare dense MLP of the same
shapes (F*D -> 256 -> 128 -> 1, forward + backward + the same Adam update) on a
device-resident dense input: no embedding lookup, no host data, nothing but the MLP.

Writes benchmarks/results/train_throughput.json and docs/results/train_throughput.md.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import common
from jaxrec.data import batching
from jaxrec.data.movielens import load_movielens_100k
from jaxrec.nn import MLP
from jaxrec.train import experiment
from jaxrec.train.config import default_config
from jaxrec.train.prefetch import device_prefetch

REFERENCE = {"dnn": 87_400, "deepfm": 67_600, "dcnv2": 54_700}  # movielens-task.md, PyTorch library, this CPU class


def dense_flops_per_example(model: str, in_dim: int = 160, hidden=(256, 128), num_cross: int = 2) -> int:
    """Matmul FLOPs of one training example: forward, weight gradients and input gradients.

    The ceiling's input is data, so its first layer needs no input gradient; the models'
    first layer input is the embeddings, which do.
    """
    dims = (in_dim,) + tuple(hidden) + (1,)
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    if model == "dcnv2":
        macs += num_cross * in_dim * in_dim
    first_input_grad = in_dim * hidden[0]
    return 2 * (3 * macs - (first_input_grad if model == "mlp_ceiling" else 0))


def model_runner(model: str, batch_size: int, dataset):
    """Returns `run_epoch(epoch) -> seconds`, training `model` exactly as train.py does."""
    c = default_config()
    c.model.name = model
    c.model.embed_dim, c.model.hidden = 16, (256, 128)
    c.train.batch_size = batch_size
    exp = experiment.build(c, dataset)
    state = exp.init_state()
    spe = exp.steps_per_epoch
    stream = device_prefetch(batching.train_stream(dataset.columns("train"), batch_size, exp.steps_per_call, 0, 0, 10**9))

    def run_epoch(epoch: int) -> float:
        nonlocal state
        tic = time.perf_counter()
        for _ in range(spe // exp.steps_per_call):
            _, chunk = next(stream)
            state, out = exp.train_steps(state, chunk)
            np.asarray(out["loss"])
        return time.perf_counter() - tic

    return run_epoch, exp.steps_per_epoch * batch_size


def ceiling_runner(batch_size: int, in_dim: int, steps: int):
    """The bare MLP train step at the same shapes, input already on the device."""
    mlp = MLP((256, 128), out_dim=1)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(steps, batch_size, in_dim)).astype(np.float32))
    y = jnp.asarray((rng.random((steps, batch_size)) < 0.55).astype(np.float32))
    params = mlp.init(jax.random.PRNGKey(0), x[0])
    tx = optax.adam(1e-3)

    @jax.jit
    def epoch_fn(carry, x, y):
        def step(carry, xy):
            p, s = carry
            loss, g = jax.value_and_grad(lambda p: optax.sigmoid_binary_cross_entropy(mlp.apply(p, xy[0])[:, 0], xy[1]).mean())(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss
        return jax.lax.scan(step, carry, (x, y))

    carry = (params, tx.init(params))

    def run_epoch(epoch: int) -> float:
        nonlocal carry
        tic = time.perf_counter()
        carry, losses = epoch_fn(carry, x, y)
        np.asarray(losses)
        return time.perf_counter() - tic

    return run_epoch, steps * batch_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--models", nargs="+", default=["dnn", "deepfm", "dcnv2"])
    p.add_argument("--data_dir", default=common.default_data_dir())
    p.add_argument("--out", default="train_throughput", help="name of the JSON under benchmarks/results/")
    p.add_argument("--no_doc", action="store_true", help="do not rewrite docs/results/train_throughput.md")
    args = p.parse_args()

    dataset = load_movielens_100k(args.data_dir)
    n_fields = len(dataset.features)
    runners = {}
    for bs in args.batch_sizes:
        steps = batching.steps_per_epoch(dataset.num_rows("train"), bs)
        runners[("mlp_ceiling", bs)] = ceiling_runner(bs, n_fields * 16, steps)
        for m in args.models:
            runners[(m, bs)] = model_runner(m, bs, dataset)
    times = {k: [] for k in runners}
    for epoch in tqdm(range(args.epochs), desc="epochs (round-robin over models)"):
        for key, (run, _) in runners.items():
            times[key].append(run(epoch))

    rows = []
    for (name, bs), (_, examples) in runners.items():
        per_epoch = [examples / t for t in times[(name, bs)]]
        rows.append({"model": name, "batch_size": bs, "examples_per_epoch": examples,
                     "examples_per_sec_median": float(np.median(per_epoch[1:])),
                     "examples_per_sec_per_epoch": per_epoch})
    ceiling = {r["batch_size"]: r["examples_per_sec_median"] for r in rows if r["model"] == "mlp_ceiling"}
    for r in rows:
        r["fraction_of_ceiling"] = r["examples_per_sec_median"] / ceiling[r["batch_size"]]
        r["dense_flops_per_example"] = dense_flops_per_example(r["model"], n_fields * 16)
        r["dense_gflops_per_sec"] = r["dense_flops_per_example"] * r["examples_per_sec_median"] / 1e9
        if r["model"] in REFERENCE and r["batch_size"] == 1024:
            r["speedup_vs_reference"] = r["examples_per_sec_median"] / REFERENCE[r["model"]]
    payload = {"benchmark": "train_throughput", "command": common.command(), "machine": common.machine(),
               "epochs": args.epochs, "statistic": "median over epochs 2..N", "results": rows}
    path = common.write_json(args.out, payload)
    print(f"wrote {path}")
    for r in rows:
        print(f"{r['model']:12s} batch {r['batch_size']:5d}: {r['examples_per_sec_median']:>10,.0f} ex/s "
              f"({r['fraction_of_ceiling']:.0%} of ceiling)")
    if not args.no_doc:
        write_doc(payload)


def write_doc(payload: dict) -> None:
    m = payload["machine"]
    lines = [
        "# Train throughput on MovieLens-100K",
        "",
        f"Generated by `{payload['command']}`.",
        f"Machine: {common.machine_line(m)}.",
        "",
        "Examples/s of a whole training epoch (80,000 rows, full batches) through the library's own path",
        "(host chunks of one epoch, one compiled call of K `lax.scan` steps), median over epochs",
        f"2..{payload['epochs']} (epoch 1 compiles). `mlp_ceiling` is the bare dense MLP of the same shapes",
        "(160 -> 256 -> 128 -> 1, forward + backward + Adam) on a device-resident input, measured in",
        "the same run, round-robin with the models. Reference: the PyTorch library of `movielens-task.md`",
        "on a 2-core CPU (batch 1024).",
        "",
        "`dense GFLOP/s` counts the matmul work of a training example (forward, weight and input",
        "gradients; LR-sized extras such as the FM term left out) times examples/s: how close each run",
        "is to the machine's matmul throughput. The models need the first layer's input gradient (for",
        "the embeddings), which the ceiling does not, so they do ~18% more matmul work per example.",
        "",
        "| model | batch | examples/s (median) | of MLP ceiling | dense GFLOP/s | vs reference |",
        "|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        ref = f"{r['speedup_vs_reference']:.1f}x" if "speedup_vs_reference" in r else ""
        lines.append(f"| {r['model']} | {r['batch_size']} | {r['examples_per_sec_median']:,.0f} | "
                     f"{r['fraction_of_ceiling']:.0%} | {r['dense_gflops_per_sec']:.0f} | {ref} |")
    lines += ["", "Per-epoch figures are in `benchmarks/results/train_throughput.json`.", ""]
    common.DOCS.mkdir(parents=True, exist_ok=True)
    (common.DOCS / "train_throughput.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
