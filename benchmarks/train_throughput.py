"""Train throughput of DNN, DeepFM and DCNv2 on MovieLens-100K, against a bare-MLP ceiling
and against plain hand-written JAX/Flax DeepFM and DCNv2 (`plain_ctr.py`, no jaxrec).

    python benchmarks/train_throughput.py [--epochs 8] [--batch_sizes 1024 4096]

Each model trains through the library's own path (`jaxrec.train.experiment.build`: host chunks of
a whole epoch, `train_steps` = K steps per compiled call); examples/s is taken per epoch and
the median over epochs 2..N is reported (epoch 1 compiles). In the same run, round-robin
with the models so drift hits all alike, the *ceiling* trains the bare dense MLP of the same
shapes (F*D -> 256 -> 128 -> 1, forward + backward + the same Adam update) on a
device-resident dense input: no embedding lookup, no host data, nothing but the MLP.
`plain_deepfm` / `plain_dcnv2` are the same models written by hand (`plain_ctr.py`: one
Adam over all parameters, one jitted `lax.scan` over the epoch's batches, the epoch's
shuffle and host->device copy timed with it); after the last epoch every model's test AUC
is computed, so the peers are checked to learn the same thing.

Writes benchmarks/results/train_throughput.json and docs/results/train_throughput.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import common
import plain_ctr
from jaxrec.data import batching
from jaxrec.data.movielens import load_movielens_100k
from jaxrec.nn import MLP
from jaxrec.train import experiment
from jaxrec.train.config import default_config
from jaxrec.train.prefetch import device_prefetch

REFERENCE = {"dnn": 87_400, "deepfm": 67_600, "dcnv2": 54_700}  # movielens-task.md, PyTorch library, this CPU class


PLAIN = {"deepfm": "plain_deepfm", "dcnv2": "plain_dcnv2"}  # jaxrec model -> its hand-written peer


def dense_flops_per_example(model: str, in_dim: int = 160, hidden=(256, 128), num_cross: int = 2) -> int:
    """Matmul FLOPs of one training example: forward, weight gradients and input gradients.

    The ceiling's input is data, so its first layer needs no input gradient; the models'
    first layer input is the embeddings, which do.
    """
    dims = (in_dim,) + tuple(hidden) + (1,)
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    if model.removeprefix("plain_") == "dcnv2":
        macs += num_cross * in_dim * in_dim
    first_input_grad = in_dim * hidden[0]
    return 2 * (3 * macs - (first_input_grad if model == "mlp_ceiling" else 0))


def model_runner(model: str, batch_size: int, dataset):
    """Returns `(run_epoch(epoch) -> seconds, examples per epoch, check() -> {test_auc,
    num_params})`, training `model` exactly as train.py does."""
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

    def check() -> dict:
        return {"test_auc": experiment.evaluate(exp, state.params, "test")["auc"],  # protocol: a same-model check against the peer, no choice
                "num_params": plain_ctr.num_params({k: state.params[k] for k in ("dense", "sparse")})}

    return run_epoch, exp.steps_per_epoch * batch_size, check


def plain_runner(model: str, batch_size: int, dataset):
    """The hand-written peer of `model` (`plain_ctr`): jaxrec only loads the data. Each epoch
    shuffles the rows, copies the epoch's ids `[S, B, F]` and labels to the device and runs
    one jitted `lax.scan` over its S batches (all timed)."""
    names = [f.name for f in dataset.features]
    vocab = tuple(int(f.vocab_size) for f in dataset.features)
    net = plain_ctr.DeepFM(vocab, 16, (256, 128)) if model == "deepfm" else plain_ctr.DCNv2(vocab, 16, (256, 128), num_cross=2)
    carry, epoch_fn, predict = plain_ctr.trainer(net, len(names))
    cols = dataset.columns("train")
    ids, labels = np.stack([cols[n] for n in names], axis=1), cols["labels"]
    steps = batching.steps_per_epoch(len(labels), batch_size)
    rng = np.random.default_rng(0)

    def run_epoch(epoch: int) -> float:
        nonlocal carry
        tic = time.perf_counter()
        order = rng.permutation(len(labels))[:steps * batch_size]
        x = jnp.asarray(ids[order].reshape(steps, batch_size, -1))
        y = jnp.asarray(labels[order].reshape(steps, batch_size))
        carry, losses = epoch_fn(carry, x, y)
        np.asarray(losses)
        return time.perf_counter() - tic

    def check() -> dict:
        test = dataset.columns("test")  # protocol: a same-model check against the peer, no choice
        scores = np.asarray(predict(carry[0], jnp.asarray(np.stack([test[n] for n in names], axis=1))))
        return {"test_auc": plain_ctr.auc(np.asarray(test["labels"]), scores), "num_params": plain_ctr.num_params(carry[0])}

    return run_epoch, steps * batch_size, check


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

    return run_epoch, steps * batch_size, lambda: {"num_params": plain_ctr.num_params(carry[0])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--models", nargs="+", default=["dnn", "deepfm", "dcnv2"])
    p.add_argument("--no_plain", action="store_true", help="skip the hand-written peers of DeepFM / DCNv2")
    p.add_argument("--data_dir", default=common.default_data_dir())
    p.add_argument("--out", default="train_throughput", help="name of the JSON under benchmarks/results/")
    p.add_argument("--no_doc", action="store_true", help="do not rewrite docs/results/train_throughput.md")
    p.add_argument("--doc_only", action="store_true", help="only rewrite the page from benchmarks/results/<out>.json")
    args = p.parse_args()
    if args.doc_only:
        write_doc(json.loads((common.RESULTS / f"{args.out}.json").read_text()))
        return

    dataset = load_movielens_100k(args.data_dir)
    n_fields = len(dataset.features)
    runners = {}
    for bs in args.batch_sizes:
        steps = batching.steps_per_epoch(dataset.num_rows("train"), bs)
        runners[("mlp_ceiling", bs)] = ceiling_runner(bs, n_fields * 16, steps)
        for m in args.models:
            runners[(m, bs)] = model_runner(m, bs, dataset)
            if m in PLAIN and not args.no_plain:
                runners[(PLAIN[m], bs)] = plain_runner(m, bs, dataset)
    times = {k: [] for k in runners}
    loads = [os.getloadavg()[0]]
    for epoch in tqdm(range(args.epochs), desc="epochs (round-robin over models)"):
        # every other epoch in reverse order, so no model always runs right after the same neighbour
        for key, (run, _, _) in (list(runners.items())[::-1] if epoch % 2 else runners.items()):
            times[key].append(run(epoch))
        loads.append(os.getloadavg()[0])

    rows = []
    for (name, bs), (_, examples, check) in runners.items():
        per_epoch = [examples / t for t in times[(name, bs)]]
        rows.append({"model": name, "batch_size": bs, "examples_per_epoch": examples,
                     "examples_per_sec_median": float(np.median(per_epoch[1:])),
                     "examples_per_sec_per_epoch": per_epoch, **check()})
    ceiling = {r["batch_size"]: r["examples_per_sec_median"] for r in rows if r["model"] == "mlp_ceiling"}
    rate = {(r["model"], r["batch_size"]): r["examples_per_sec_median"] for r in rows}
    for r in rows:
        r["fraction_of_ceiling"] = r["examples_per_sec_median"] / ceiling[r["batch_size"]]
        r["dense_flops_per_example"] = dense_flops_per_example(r["model"], n_fields * 16)
        r["dense_gflops_per_sec"] = r["dense_flops_per_example"] * r["examples_per_sec_median"] / 1e9
        if r["model"] in REFERENCE and r["batch_size"] == 1024:
            r["speedup_vs_reference"] = r["examples_per_sec_median"] / REFERENCE[r["model"]]
        if (PLAIN.get(r["model"]), r["batch_size"]) in rate:
            r["ratio_vs_plain"] = r["examples_per_sec_median"] / rate[(PLAIN[r["model"]], r["batch_size"])]
            # the same ratio per epoch (epochs 2..N), to show its spread under a noisy machine
            plain_times = times[(PLAIN[r["model"]], r["batch_size"])]
            r["ratio_vs_plain_per_epoch"] = [p / t for t, p in zip(times[(r["model"], r["batch_size"])], plain_times)][1:]
    payload = {"benchmark": "train_throughput", "command": common.command(), "machine": common.machine(),
               "epochs": args.epochs, "statistic": "median over epochs 2..N",
               "load_average_1min": {"start": loads[0], "max": max(loads), "per_epoch_end": loads[1:]},
               "results": rows}
    path = common.write_json(args.out, payload)
    print(f"wrote {path}")
    for r in rows:
        extra = f", {r['ratio_vs_plain']:.2f}x plain" if "ratio_vs_plain" in r else ""
        auc = f", test AUC {r['test_auc']:.4f}" if "test_auc" in r else ""
        print(f"{r['model']:12s} batch {r['batch_size']:5d}: {r['examples_per_sec_median']:>10,.0f} ex/s "
              f"({r['fraction_of_ceiling']:.0%} of ceiling{extra}), {r['num_params']:,} params{auc}")
    if not args.no_doc:
        write_doc(payload)


def write_doc(payload: dict) -> None:
    m, rows = payload["machine"], payload["results"]
    load = payload["load_average_1min"]
    lines = [
        "# Train throughput on MovieLens-100K",
        "",
        f"Generated by `{payload['command']}`.",
        f"Machine: {common.machine_line(m)}.",
        f"Load: 1-minute load average {load['start']:.1f} at the start, at most {load['max']:.1f} during the run, on",
        f"{m['cores']} cores shared with other jobs: absolute rates move with the load (see the per-epoch figures);",
        "compare the rows with each other (measured round-robin in the same run), not across pages.",
        *[f"In this run the ceiling's per-epoch rate at batch {r['batch_size']} ranged "
          f"{min(r['examples_per_sec_per_epoch'][1:]):,.0f} - {max(r['examples_per_sec_per_epoch'][1:]):,.0f} examples/s."
          for r in rows if r["model"] == "mlp_ceiling"],
        "",
        "Examples/s of a whole training epoch (80,000 rows, full batches) through the library's own path",
        "(host chunks of one epoch, one compiled call of K `lax.scan` steps), median over epochs",
        f"2..{payload['epochs']} (epoch 1 compiles). `mlp_ceiling` is the bare dense MLP of the same shapes",
        "(160 -> 256 -> 128 -> 1, forward + backward + Adam) on a device-resident input, measured in",
        "the same run, round-robin with the models (every other epoch in reverse order).",
        "`plain_deepfm` / `plain_dcnv2` are the same two models written by hand in plain JAX/Flax",
        "without jaxrec (`benchmarks/plain_ctr.py`: one concatenated table per width, one optax Adam",
        "1e-3 over all parameters, BCE, one jitted `lax.scan` over the epoch's batches; the epoch's",
        "shuffle and host->device copy are timed with it). Reference: the PyTorch library of",
        "`movielens-task.md` on a 2-core CPU (batch 1024).",
        "",
        "`dense GFLOP/s` counts the matmul work of a training example (forward, weight and input",
        "gradients; LR-sized extras such as the FM term left out) times examples/s: how close each run",
        "is to the machine's matmul throughput. The models need the first layer's input gradient (for",
        "the embeddings), which the ceiling does not, so they do ~23% more matmul work per example.",
        "",
        "| model | batch | examples/s (median) | of MLP ceiling | dense GFLOP/s | vs reference |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = f"{r['speedup_vs_reference']:.1f}x" if "speedup_vs_reference" in r else ""
        lines.append(f"| {r['model']} | {r['batch_size']} | {r['examples_per_sec_median']:,.0f} | "
                     f"{r['fraction_of_ceiling']:.0%} | {r['dense_gflops_per_sec']:.0f} | {ref} |")
    by = {(r["model"], r["batch_size"]): r for r in rows}
    peers = [r for r in rows if "ratio_vs_plain" in r]
    if peers:
        lines += [
            "",
            "## jaxrec against the hand-written peers",
            "",
            "`ratio` is jaxrec's median examples/s over the plain peer's; `per-epoch ratio` is the median of",
            "the ratios of each epoch's pair (the two run back to back, so load swings hit both alike).",
            "Parameters count dense weights and tables; test AUC is after the run's epochs on the MovieLens-100K",
            "test split, without early stopping, a check that both train the same model, not a choice (the peers",
            "shuffle the data in another order, so the AUCs differ by up to "
            f"{max(abs(r['test_auc'] - by[(PLAIN[r['model']], r['batch_size'])]['test_auc']) for r in peers):.4f} here, not 0).",
            "",
            "| model | batch | jaxrec examples/s | plain examples/s | ratio | per-epoch ratio | parameters (jaxrec / plain) | test AUC (jaxrec / plain) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in peers:
            q = by[(PLAIN[r["model"]], r["batch_size"])]
            lines.append(f"| {r['model']} | {r['batch_size']} | {r['examples_per_sec_median']:,.0f} | "
                         f"{q['examples_per_sec_median']:,.0f} | {r['ratio_vs_plain']:.2f}x | "
                         f"{np.median(r['ratio_vs_plain_per_epoch']):.2f}x | {r['num_params']:,} / {q['num_params']:,} | "
                         f"{r['test_auc']:.4f} / {q['test_auc']:.4f} |")
    lines += dcnv2_gap(by)
    lines += ["", "Per-epoch figures are in `benchmarks/results/train_throughput.json`.", ""]
    lines += common.claims_table(claims(rows))
    common.DOCS.mkdir(parents=True, exist_ok=True)
    (common.DOCS / "train_throughput.md").write_text("\n".join(lines))


def claims(rows: list[dict]) -> list[dict]:
    """jaxrec's overhead over a hand-written JAX model is under 10%: per model and batch, the
    per-epoch ratios jaxrec / plain (each epoch's pair run back to back) are above 0.9 by a
    one-sided t-test (paired_t against 0.9, p < 0.05), stated before the run."""
    out = []
    for r in rows:
        if "ratio_vs_plain_per_epoch" not in r:
            continue
        ratios = r["ratio_vs_plain_per_epoch"]
        v = common.verdict(ratios, [0.9] * len(ratios), "paired_t")
        out.append(common.claim_row(f"{r['model']} at batch {r['batch_size']}: >= 0.9x the examples/s of the hand-written JAX peer",
                                    f"median per-epoch ratio {np.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})",
                                    v, "met", "not met") | {"seeds": f"{len(ratios)} epochs"})
    return out


def dcnv2_gap(by: dict) -> list[str]:
    """The page's paragraph on why DCNv2 runs at a smaller fraction of the ceiling than DeepFM."""
    bs = next((b for (name, b) in by if name == "dcnv2" and ("deepfm", b) in by), None)
    if bs is None:
        return []
    dcn, fm = by[("dcnv2", bs)], by[("deepfm", bs)]
    work = dcn["dense_flops_per_example"] / fm["dense_flops_per_example"]
    lines = [
        "",
        "## Why DCNv2 reaches a smaller fraction of the ceiling than DeepFM",
        "",
        "The cross network adds 2 layers x 160 x 160 = 51,200 multiply-adds per example to the MLP's",
        f"73,856, so a DCNv2 training example is {work:.2f}x the matmul work of a DeepFM (or DNN) example",
        f"({dcn['dense_flops_per_example']:,} vs {fm['dense_flops_per_example']:,} FLOPs; the FM term and the lookups",
        "are small beside either). At DeepFM's matmul throughput DCNv2 would run at",
        f"{fm['fraction_of_ceiling'] / work:.0%} of the ceiling (DeepFM's {fm['fraction_of_ceiling']:.0%} / {work:.2f});",
        f"at batch {bs} it runs at {dcn['fraction_of_ceiling']:.0%}: its dense GFLOP/s ({dcn['dense_gflops_per_sec']:.0f})",
        f"is {dcn['dense_gflops_per_sec'] / fm['dense_gflops_per_sec']:.2f}x DeepFM's ({fm['dense_gflops_per_sec']:.0f}). The per-step cost",
        "is the matmuls on this CPU, and DCNv2 simply has more of them.",
    ]
    plain = by.get(("plain_dcnv2", bs))
    if plain is not None:
        verdict = ("the gap to DeepFM is the cross layers' extra matmul work, not jaxrec overhead" if dcn["ratio_vs_plain"] >= 0.9
                   else "part of the gap is jaxrec overhead")
        lines += [
            f"The hand-written DCNv2 without jaxrec runs at {plain['fraction_of_ceiling']:.0%} of the ceiling",
            f"({plain['dense_gflops_per_sec']:.0f} dense GFLOP/s), and jaxrec's runs at {dcn['ratio_vs_plain']:.2f}x of its rate:",
            f"{verdict}.",
        ]
    return lines


if __name__ == "__main__":
    main()
