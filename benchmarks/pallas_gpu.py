"""The Pallas kernels on a GPU against the XLA path of the same op: time per call.

    python benchmarks/pallas_gpu.py time [--repeats 50] [--precision default|highest] [--out DIR]   # on a GPU
    python benchmarks/gpu_precision_probe.py DIR                                                 # on a GPU
    python benchmarks/pallas_gpu.py doc                    # rewrite docs/results/pallas_gpu.md

Both implementations of each op run in the same process, interleaved, on the same inputs;
each timing is the median over `--repeats` calls (after two warm-up calls) of one jitted
call with `block_until_ready`, and the page reports the ratio XLA / Pallas per shape (> 1:
the kernel is faster).

  embedding_bag    `[V, D]` float32 table, ids `[4096, 26]` uniform over V, full bags, 'sum';
                   forward, and forward + backward (the gradient w.r.t. the table through
                   the custom VJP: a dense `[V, D]` scatter-add).
  field_attention  q, k, v `[B, H, F, Dh]` and w `[F, F]`, B = 4096; forward, and forward +
                   backward (gradients of q, k, v, w), float32 and bfloat16.

`--precision` is field_attention's dot precision (both paths' XLA dots stay at the default):
'default' (TF32 on the GPU) writes `<out>/pallas_gpu.json`, 'highest' `<out>/pallas_gpu_highest.json`
(default out: benchmarks/results); `doc` reads them, and the precision probe's
`pallas_gpu_precision.json`, from benchmarks/results.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import time
from pathlib import Path

import numpy as np

import common

BAGS, BAG_LEN = 4096, 26
BAG_SHAPES = [(100_000, 16), (100_000, 64), (1_000_000, 64), (1_000_000, 128), (10_000_000, 64)]
ATTN_SHAPES = [(4096, 2, 16, 16), (4096, 2, 26, 32), (4096, 4, 39, 32), (4096, 4, 64, 64)]


def median_ms(fn, args, repeats: int) -> float:
    import jax

    for _ in range(2):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def bench_bags(repeats: int, rows: list, save) -> None:
    """Appends one row per table shape to `rows`, calling `save()` after each."""
    import jax
    import jax.numpy as jnp

    from pallas_kernels.embedding_bag import embedding_bag

    for V, D in BAG_SHAPES:
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)  # drawn on the device: a 10^7-row table is 2.5 GB
        table = jax.random.normal(k1, (V, D), jnp.float32)
        ids = jax.random.randint(k2, (BAGS, BAG_LEN), 0, V, jnp.int32)
        lengths = jnp.full((BAGS,), BAG_LEN, jnp.int32)
        g = jax.random.normal(k3, (BAGS, D), jnp.float32)
        row = {"V": V, "D": D, "bytes_read": BAGS * BAG_LEN * D * 4}
        for impl in ("pallas", "xla"):
            op = functools.partial(embedding_bag, combiner="sum", implementation=impl)
            fwd = jax.jit(op)
            grad = jax.jit(jax.grad(lambda t, op=op: jnp.sum(op(t, ids, lengths) * g)))
            row[f"{impl}_fwd_ms"] = median_ms(fwd, (table, ids, lengths), repeats)
            row[f"{impl}_fwd_bwd_ms"] = median_ms(grad, (table,), repeats)
        row["fwd_gbps_pallas"] = row["bytes_read"] / row["pallas_fwd_ms"] / 1e6
        rows.append(row)
        save()
        print(row, flush=True)


def bench_attention(repeats: int, rows: list, save, precision=None) -> None:
    """Appends one row per (shape, dtype) to `rows`, calling `save()` after each."""
    import jax
    import jax.numpy as jnp

    from pallas_kernels.field_attention import field_attention

    for shape in ATTN_SHAPES:
        for dtype in (jnp.float32, jnp.bfloat16):
            rng = np.random.default_rng(0)
            q, k, v = (jnp.asarray(rng.normal(size=shape), dtype) for _ in range(3))
            w = jnp.asarray(rng.normal(size=(shape[2], shape[2])), dtype)
            g = jnp.asarray(rng.normal(size=shape), jnp.float32)
            row = {"shape": list(shape), "dtype": jnp.dtype(dtype).name}
            for impl in ("pallas", "xla"):
                op = functools.partial(field_attention, implementation=impl, precision=precision if impl == "pallas" else None)
                fwd = jax.jit(op)
                grad = jax.jit(jax.grad(lambda q, k, v, w, op=op: jnp.sum(op(q, k, v, w).astype(jnp.float32) * g), (0, 1, 2, 3)))
                row[f"{impl}_fwd_ms"] = median_ms(fwd, (q, k, v, w), repeats)
                row[f"{impl}_fwd_bwd_ms"] = median_ms(grad, (q, k, v, w), repeats)
            rows.append(row)
            save()
            print(row, flush=True)


def device() -> dict:
    import jax

    d = jax.devices()[0]
    return {"device": getattr(d, "device_kind", str(d)), "backend": jax.default_backend(), "jax": jax.__version__}


def shown(command: str) -> str:
    """The command as run, without the recorded test summary it carried."""
    return re.sub(r" --gpu_tests .*? --commit", " --gpu_tests ... --commit", command)


def write_doc() -> None:
    d = json.loads((common.RESULTS / "pallas_gpu.json").read_text())
    dev = d["device"]
    lines = ["# Pallas kernels on a GPU", "",
             f"Generated by `benchmarks/pallas_gpu.py` (module docstring: workloads and timing): `{shown(d['command'])}` on "
             f"{dev['device']} (backend {dev['backend']}, jax {dev['jax']}), {d['date']}, commit {d['git_commit']}. "
             f"Median of {d['repeats']} calls per cell; ratio = XLA / Pallas time in the same run (> 1: the kernel is faster).", "",
             f"Correctness on the same machine: {d.get('gpu_tests', 'not recorded')}.", "",
             "## embedding_bag (4096 bags of 26 ids, sum)", "",
             "| V | D | Pallas fwd ms | XLA fwd ms | fwd ratio | Pallas fwd GB/s of rows | Pallas fwd+bwd ms | XLA fwd+bwd ms | fwd+bwd ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in d["embedding_bag"]:
        lines.append(f"| {r['V']:,} | {r['D']} | {r['pallas_fwd_ms']:.3f} | {r['xla_fwd_ms']:.3f} | {r['xla_fwd_ms'] / r['pallas_fwd_ms']:.2f} | "
                     f"{r['fwd_gbps_pallas']:.0f} | {r['pallas_fwd_bwd_ms']:.3f} | {r['xla_fwd_bwd_ms']:.3f} | "
                     f"{r['xla_fwd_bwd_ms'] / r['pallas_fwd_bwd_ms']:.2f} |")
    lines += ["", "## field_attention (B = 4096)", "",
              "| B, H, F, Dh | dtype | Pallas fwd ms | XLA fwd ms | fwd ratio | Pallas fwd+bwd ms | XLA fwd+bwd ms | fwd+bwd ratio |",
              "|---|---|---|---|---|---|---|---|"]
    for r in d["field_attention"]:
        lines.append(f"| {', '.join(map(str, r['shape']))} | {r['dtype']} | {r['pallas_fwd_ms']:.3f} | {r['xla_fwd_ms']:.3f} | "
                     f"{r['xla_fwd_ms'] / r['pallas_fwd_ms']:.2f} | {r['pallas_fwd_bwd_ms']:.3f} | {r['xla_fwd_bwd_ms']:.3f} | "
                     f"{r['xla_fwd_bwd_ms'] / r['pallas_fwd_bwd_ms']:.2f} |")
    hi_path = common.RESULTS / "pallas_gpu_highest.json"
    if hi_path.is_file():
        hi = json.loads(hi_path.read_text())
        lines += ["", "## field_attention with precision='highest' (exact float32 dots in the kernel)", "",
                  f"A second run (`{shown(hi['command'])}`, {hi['date']}, commit {hi['git_commit']}): the kernel at HIGHEST against the "
                  "XLA path at the default precision, same process.", "",
                  "| B, H, F, Dh | dtype | Pallas fwd ms | XLA fwd ms | fwd ratio | Pallas fwd+bwd ms | XLA fwd+bwd ms | fwd+bwd ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in hi["field_attention"]:
            lines.append(f"| {', '.join(map(str, r['shape']))} | {r['dtype']} | {r['pallas_fwd_ms']:.3f} | {r['xla_fwd_ms']:.3f} | "
                         f"{r['xla_fwd_ms'] / r['pallas_fwd_ms']:.2f} | {r['pallas_fwd_bwd_ms']:.3f} | {r['xla_fwd_bwd_ms']:.3f} | "
                         f"{r['xla_fwd_bwd_ms'] / r['pallas_fwd_bwd_ms']:.2f} |")
        lines += ["", "The same run's embedding_bag ratios (a second measurement of the table above; no dots, so no precision): "
                  + ", ".join(f"V={r['V']:,} D={r['D']}: fwd {r['xla_fwd_ms'] / r['pallas_fwd_ms']:.2f}, fwd+bwd "
                              f"{r['xla_fwd_bwd_ms'] / r['pallas_fwd_bwd_ms']:.2f}" for r in hi["embedding_bag"]) + "."]
        spread = max(abs(a["xla_fwd_ms"] / a["pallas_fwd_ms"] - b["xla_fwd_ms"] / b["pallas_fwd_ms"])
                     for a, b in zip(d["embedding_bag"], hi["embedding_bag"]))
        lines += ["", f"The two runs' embedding_bag forward ratios differ by up to {spread:.2f}: calls of about 0.1 ms are "
                  "dominated by dispatch, so read them as parity with XLA's gather, not as a ranking."]
    probe = common.RESULTS / "pallas_gpu_precision.json"
    if probe.is_file():
        p = json.loads(probe.read_text())
        lines += ["", "## Precision", "",
                  "Largest error of the float32 forward relative to the output's scale, against a float64 numpy reference "
                  "(`python benchmarks/gpu_precision_probe.py`, same machine): at the default precision both the XLA path and "
                  "the Triton kernel take TF32, so field_attention's `precision` defaults to the backend's (the kernel is then "
                  "as accurate as XLA's own matmuls), and `precision='highest'` buys exact float32 at the cost above.", "",
                  "| B, H, F, Dh | XLA, default | XLA, HIGHEST | Pallas, default | Pallas, HIGHEST |", "|---|---|---|---|---|"]
        for shape, r in p.items():
            lines.append(f"| {shape.strip('()')} | {r['xla_default']:.1e} | {r['xla_highest']:.1e} | {r['pallas_default']:.1e} | "
                         f"{r['pallas_highest']:.1e} |")
    lines += ["", *common.claims_table(claims(d))]
    common.write_page("pallas_gpu.md", lines + [""])


# Peak HBM bandwidth of the devices the page has run on (GB/s), from NVIDIA's datasheets.
HBM_GBPS = {"NVIDIA H100 80GB HBM3": 3350.0, "NVIDIA H200": 4800.0}


def claims(d: dict) -> list[dict]:
    """The kernels' targets (issue 20), judged on the saved run: embedding_bag reads rows at >= 40%
    of the device's HBM bandwidth in its best cell; field_attention is at least XLA's speed in
    every measured cell (rule every_repeat over cells, ratio XLA / Pallas >= 1, forward and
    forward + backward); the GPU tests pass at a tolerance stated before the run."""
    rows = []
    peak = HBM_GBPS.get(d["device"]["device"])
    best = max(r["fwd_gbps_pallas"] for r in d["embedding_bag"])
    figure = f"best cell {best:.0f} GB/s of rows" + (f" = {best / peak:.0%} of {peak:,.0f} GB/s" if peak else "")
    rows.append({"claim": "embedding_bag reads rows at >= 40% of HBM bandwidth", "figure": figure, "seeds": f"{len(d['embedding_bag'])} cells",
                 "rule": "best cell, median of the calls", "verdict": ("met" if best / peak >= 0.4 else "not met") if peak else "not judged (unknown device)"})
    fa = d["field_attention"]
    cells = [r["xla_fwd_ms"] / r["pallas_fwd_ms"] for r in fa] + [r["xla_fwd_bwd_ms"] / r["pallas_fwd_bwd_ms"] for r in fa]
    v = common.verdict(cells, [1.0] * len(cells), "every_repeat", side="greater", margin=-1e-12)
    rows.append({"claim": "field_attention at least as fast as XLA in every cell", "figure":
                 f"{sum(c >= 1 for c in cells)} of {len(cells)} cells (fwd and fwd+bwd) at ratio >= 1; min {min(cells):.2f}",
                 "seeds": f"{len(cells)} cells", "rule": common.RULES["every_repeat"], "verdict": "met" if v["holds"] else "not met"})
    rows.append({"claim": "GPU tests pass at the tolerance stated before the run", "figure": d.get("gpu_tests", "not recorded"),
                 "seeds": "-", "rule": "every test, tolerance fixed before the run",
                 "verdict": "not met: the tolerance was changed after 4 failed and only the 16 affected cases reran; "
                            "no GPU was lent to issue 20 to rerun them all"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("time", "doc"))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", default=str(common.RESULTS))
    parser.add_argument("--gpu_tests", default="", help="the pytest summary line of tests/kernels/test_on_gpu.py, recorded")
    parser.add_argument("--commit", default="", help="the commit measured (where the copy has no .git)")
    parser.add_argument("--precision", default="default", choices=("default", "highest"),
                        help="field_attention kernel's dot precision")
    args = parser.parse_args()
    if args.part == "time":
        import jax

        if jax.default_backend() != "gpu":
            parser.error(f"needs a GPU; JAX's backend is {jax.default_backend()!r}")
        m = common.machine()
        payload = {"command": common.command(), "device": device(), "date": m["date"], "git_commit": args.commit or m["git_commit"],
                   "repeats": args.repeats, "gpu_tests": args.gpu_tests or None, "precision": args.precision,
                   "embedding_bag": [], "field_attention": []}
        name = "pallas_gpu" if args.precision == "default" else "pallas_gpu_highest"
        Path(args.out).mkdir(parents=True, exist_ok=True)

        def save():  # after every row, so a run cut short keeps what it measured
            (Path(args.out) / f"{name}.json").write_text(json.dumps(payload, indent=2))

        bench_bags(args.repeats, payload["embedding_bag"], save)
        bench_attention(args.repeats, payload["field_attention"], save, None if args.precision == "default" else "highest")
    else:
        write_doc()


if __name__ == "__main__":
    main()
