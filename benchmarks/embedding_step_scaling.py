"""Train-step time versus embedding-table rows: row-wise sparse update vs dense optax update.

    python benchmarks/embedding_step_scaling.py [--rows 1e4 1e5 1e6 1e7] [--steps 20]

A DeepFM (embed dim 16, MLP 256-128) over 26 categorical fields, batch 4096, ids drawn
uniformly from each field's vocabulary (vocab = rows / 26, so the stacked table has `rows`
rows). For each table size it times `train_steps` (the library's jitted K-step call) with
  * `rowwise`: Adam with lazy per-row moments on the touched rows only
    (`sparse_optimizer.rowwise=True`); duplicate ids merged by a bincount over the rows when
    the table has no more rows than the batch has ids (here: 10^4 and 10^5), else by sorting;
  * `rowwise_sort`: the same, always merging by sorting the ids (`sparse_optimizer.dedup=sort`),
    so one algorithm runs at every size: this is the scaling measurement;
  * `dense`:   optax Adam over the whole table (the foundation's default).
Reported: median seconds per step over repeated calls (compile excluded), and each mode's
ratio to its own time at the smallest table.

Writes benchmarks/results/embedding_step_scaling.json and docs/results/embedding_step_scaling.md.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import common
from jaxrec.data.dataset import LABELS, Dataset
from jaxrec.data.features import Categorical
from jaxrec.train import experiment
from jaxrec.train.config import default_config

FIELDS = 26


def synthetic_dataset(rows: int, batch: int, steps: int, seed: int = 0) -> Dataset:
    vocab = max(rows // FIELDS, 2)
    rng = np.random.default_rng(seed)
    n = batch * steps
    cols = {f"c{i}": rng.integers(1, vocab, n, dtype=np.int32) for i in range(FIELDS)}
    cols[LABELS] = (rng.random(n) < 0.3).astype(np.float32)
    features = tuple(Categorical(f"c{i}", encoding="identity", vocab_size=vocab) for i in range(FIELDS))
    small = {k: v[:batch] for k, v in cols.items()}
    return Dataset("step_scaling", features, {"train": cols, "valid": small, "test": small})


def time_mode(dataset: Dataset, mode: str, batch: int, steps: int, repeats: int) -> list[float]:
    c = default_config()
    c.model.name = "deepfm"
    c.model.embed_dim, c.model.hidden = 16, (256, 128)
    c.train.batch_size = batch
    c.train.steps_per_call = steps
    c.sparse_optimizer.rowwise = mode.startswith("rowwise")
    c.sparse_optimizer.dedup = "sort" if mode == "rowwise_sort" else "auto"
    exp = experiment.build(c, dataset)
    state = exp.init_state()
    cols = dataset.columns("train")
    chunk = jax.device_put({k: v.reshape((steps, batch) + v.shape[1:]) for k, v in cols.items()})
    state, out = exp.train_steps(state, chunk)  # compile
    jax.block_until_ready(out)
    per_step = []
    for _ in range(repeats):
        tic = time.perf_counter()
        state, out = exp.train_steps(state, chunk)
        jax.block_until_ready(out)
        per_step.append((time.perf_counter() - tic) / steps)
    return per_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=float, nargs="+", default=[1e4, 1e5, 1e6, 1e7])
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=10, help="steps per compiled call")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--modes", nargs="+", default=["rowwise", "rowwise_sort", "dense"])
    p.add_argument("--no_doc", action="store_true")
    args = p.parse_args()
    results = []
    for rows in [int(r) for r in args.rows]:
        ds = synthetic_dataset(rows, args.batch, args.steps)
        for mode in args.modes:
            t = time_mode(ds, mode, args.batch, args.steps, args.repeats)
            results.append({"rows": rows, "mode": mode, "seconds_per_step_median": float(np.median(t)), "seconds_per_step": t})
            print(f"rows {rows:>10,d} {mode:8s}: {np.median(t) * 1e3:8.2f} ms/step", flush=True)
        del ds
    for mode in args.modes:
        mine = [r for r in results if r["mode"] == mode]
        base = min(mine, key=lambda r: r["rows"])["seconds_per_step_median"]
        for r in mine:
            r["ratio_to_smallest"] = r["seconds_per_step_median"] / base
    payload = {"benchmark": "embedding_step_scaling", "command": common.command(), "machine": common.machine(),
               "batch": args.batch, "fields": FIELDS, "steps_per_call": args.steps, "repeats": args.repeats, "results": results}
    print(f"wrote {common.write_json('embedding_step_scaling', payload)}")
    if not args.no_doc:
        write_doc(payload)


def write_doc(payload: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for mode in sorted({r["mode"] for r in payload["results"]}):
        rs = [r for r in payload["results"] if r["mode"] == mode]
        ax.plot([r["rows"] for r in rs], [r["seconds_per_step_median"] * 1e3 for r in rs], "o-", label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("table rows")
    ax.set_ylabel("ms per train step")
    ax.set_title(f"DeepFM, {payload['fields']} fields, batch {payload['batch']}")
    ax.legend()
    fig.tight_layout()
    common.DOCS.mkdir(parents=True, exist_ok=True)
    fig.savefig(common.DOCS / "embedding_step_scaling.png", dpi=120)
    lines = [
        "# Train-step time versus embedding-table rows",
        "",
        f"Generated by `{payload['command']}`.",
        f"Machine: {common.machine_line(payload['machine'])}.",
        "",
        f"DeepFM (dim 16, MLP 256-128), {payload['fields']} fields, batch {payload['batch']}, uniform ids; median seconds per",
        f"step over {payload['repeats']} calls of {payload['steps_per_call']} steps (compile excluded). `rowwise`: lazy Adam on the",
        "touched rows only (`sparse_optimizer.rowwise=True`; duplicates merged by a bincount over the rows when the",
        "table has no more rows than the batch has ids, else by a sort); `rowwise_sort`: the same, always sorting",
        "(one algorithm at every size: the scaling measurement); `dense`: optax Adam over the whole table.",
        "",
        "| rows | mode | ms / step | ratio to smallest table |",
        "|---|---|---|---|",
    ]
    for r in payload["results"]:
        lines.append(f"| {r['rows']:,} | {r['mode']} | {r['seconds_per_step_median'] * 1e3:.2f} | {r['ratio_to_smallest']:.2f}x |")
    lines += ["", "![step time vs rows](embedding_step_scaling.png)", ""]
    (common.DOCS / "embedding_step_scaling.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
