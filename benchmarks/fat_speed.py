"""FAT's training speed against DeepFM on the MovieLens-100K configs, measured in the same run.

    python benchmarks/fat_speed.py [--repeats 5] [--no_profile]

Both models train through the library's own path (`jaxrec.train.experiment.build` from
`configs/{fat,deepfm}_movielens.py`, batch 1024, one compiled call per epoch as in
`train.py`, or per `--steps_per_call` steps). One repeat trains one epoch of every model in turn (round-robin, so
the drift of the shared machine hits all alike); examples/s of a repeat = epoch examples /
wall seconds. The first epoch of each model (compilation) is run before the repeats and not
counted. Diagnostic rows, same protocol: FAT without dropout (`dropout=0`) and FAT without
blocks (`num_layers=0`: embeddings + flattened head only).

`--profile` (default on) traces one chunk of FAT's train step with `jax.profiler` and sums the
device time of every XLA op by the model part it comes from (its `op_name` metadata:
attention, FFN, LayerNorms, head, ...), forward and backward apart: where the time goes.

Claim (rule fixed before the run, `every_repeat`): FAT's examples/s >= 0.3x DeepFM's in every
repeat (issue 20's target). Writes benchmarks/results/fat_speed.json and docs/results/fat_speed.md.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import common
from jaxrec.data import batching
from jaxrec.train import experiment
from jaxrec.train.cli import load_config_file
from jaxrec.train.config import build_dataset

TARGET = 0.3  # FAT / DeepFM examples/s (issue 20)
VARIANTS = {  # name -> (config, model overrides)
    "deepfm": ("deepfm", {}),
    "fat": ("fat", {}),
    "fat, dropout=0": ("fat", {"dropout": 0.0}),
    "fat, num_layers=0": ("fat", {"num_layers": 0}),
}


def config(name: str, overrides: dict, data_dir: str, steps_per_call: int):
    c = load_config_file(str(common.ROOT / "configs" / f"{name}_movielens.py"))
    c.dataset.data_dir = data_dir
    if steps_per_call:
        c.train.steps_per_call = steps_per_call
    for k, v in overrides.items():
        c.model[k] = v
    return c


def runner(c, dataset):
    """`(run_epoch() -> examples/s, experiment, state box)`: one epoch of `c`'s train step."""
    exp = experiment.build(c, dataset)
    box = [exp.init_state()]
    bs, k = int(c.train.batch_size), exp.steps_per_call
    stream = batching.train_stream(dataset.columns("train"), bs, k, 0, 0, 10**12)
    chunks = exp.steps_per_epoch // k

    def run_epoch() -> float:
        tic = time.perf_counter()
        for _ in range(chunks):
            _, chunk = next(stream)
            box[0], out = exp.train_steps(box[0], chunk)
            np.asarray(out["loss"])
        return chunks * k * bs / (time.perf_counter() - tic)

    return run_epoch, exp, box, stream


def part_of(op_name: str) -> str:
    """'fwd attention', 'bwd ffn', ... from an XLA op's `op_name` metadata."""
    bwd = "transpose(" in op_name
    path = re.sub(r"(transpose\()?jvp\((\w*)\)\)?", r"\2", op_name).split("/")
    part = "other"
    for p in path:
        if p in ("attention", "ffn", "ln_attention", "ln_ffn", "ln_final", "embedding") or p.startswith(("MLP", "Dropout")):
            part = {"M": "head (MLP)", "l": "LayerNorm", "D": "dropout (mask, scale)"}.get(p[0], p)
        if "random" in p or "threefry" in p or p == "Dropout_0":
            part = "dropout RNG"
            break
    return ("bwd " if bwd else "fwd ") + part


def profile(c, dataset) -> dict:
    """Device time per model part of one traced chunk of FAT's train step (ms per step)."""
    run_epoch, exp, box, stream = runner(c, dataset)
    _, chunk = next(stream)
    chunk = jax.device_put(chunk)
    hlo = exp.train_steps.lower(box[0], chunk).compile().as_text()
    names = {m.group(1): m.group(2) for m in re.finditer(r'^\s*%([\w.\-]+) = .*?op_name="([^"]+)"', hlo, re.M)}
    box[0], out = exp.train_steps(box[0], chunk)
    np.asarray(out["loss"])
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d)
        box[0], out = exp.train_steps(box[0], chunk)
        np.asarray(out["loss"])
        jax.profiler.stop_trace()
        trace = json.load(gzip.open(sorted(Path(d).rglob("*.trace.json.gz"))[-1]))
    ms = collections.Counter()
    for e in trace["traceEvents"]:
        if e.get("ph") == "X" and e["name"] in names:
            ms[part_of(names[e["name"]])] += e["dur"] / 1e3 / exp.steps_per_call
    total = sum(ms.values())
    return {"ms_per_step": dict(ms.most_common()), "total_ms_per_step": total,
            "note": "sum of XLA op durations in the trace (ops of both cores overlap; shares, not wall time)"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps_per_call", type=int, default=0, help="steps per compiled call (0: the config's, a whole epoch)")
    p.add_argument("--data_dir", default=common.default_data_dir())
    p.add_argument("--no_profile", action="store_true")
    args = p.parse_args()
    configs = {n: config(m, o, args.data_dir, args.steps_per_call) for n, (m, o) in VARIANTS.items()}
    dataset = build_dataset(configs["deepfm"])
    runners = {n: runner(c, dataset)[0] for n, c in configs.items()}
    for f in runners.values():  # compile (not counted)
        f()
    speeds = {n: [] for n in runners}
    for r in range(args.repeats):
        for n, f in runners.items():
            speeds[n].append(f())
        print(f"repeat {r}: " + ", ".join(f"{n} {v[-1]:,.0f}" for n, v in speeds.items()) + " ex/s", flush=True)
    ratios = {n: [a / b for a, b in zip(v, speeds["deepfm"])] for n, v in speeds.items() if n != "deepfm"}
    payload = {"benchmark": "fat_speed", "command": common.command(), "machine": common.machine(),
               "repeats": args.repeats, "steps_per_call": args.steps_per_call, "target_ratio": TARGET,
               "variants": {n: {"config": f"configs/{m}_movielens.py", "overrides": o} for n, (m, o) in VARIANTS.items()},
               "examples_per_sec": speeds, "ratio_vs_deepfm": ratios,
               "profile": None if args.no_profile else profile(configs["fat"], dataset)}
    print(f"wrote {common.write_json('fat_speed', payload)}")
    write_page(payload)


def write_page(d: dict) -> None:
    lines = ["# FAT training speed vs DeepFM", "", f"`{d['command']}`  ", f"Machine: {common.machine_line(d['machine'])}.", "",
             "Both models train through `jaxrec.train.experiment.build` from `configs/<model>_movielens.py` (batch 1024, "
             f"{d['steps_per_call'] or 'an epoch of'} steps per compiled call); one repeat = one epoch of every row in turn, after a first "
             f"(compiling) epoch that is not counted; {d['repeats']} repeats. Examples/s per repeat, and the ratio to "
             "DeepFM's in the same repeat.", "",
             "| model | examples/s (median) | min | max | ratio to DeepFM (median) | ratio min | ratio max |", "|---|---|---|---|---|---|---|"]
    for n, v in d["examples_per_sec"].items():
        r = d["ratio_vs_deepfm"].get(n, [1.0])
        lines.append(f"| {n} | {np.median(v):,.0f} | {min(v):,.0f} | {max(v):,.0f} | {np.median(r):.3f} | {min(r):.3f} | {max(r):.3f} |")
    prof = d.get("profile")
    if prof:
        lines += ["", f"Where FAT's step time goes (`jax.profiler` trace of one chunk; {prof['note']}; total "
                      f"{prof['total_ms_per_step']:.1f} ms per step):", "", "| part | ms per step | share |", "|---|---|---|"]
        for k, v in prof["ms_per_step"].items():
            lines.append(f"| {k} | {v:.2f} | {v / prof['total_ms_per_step']:.1%} |")
    ratios = d["ratio_vs_deepfm"]["fat"]
    v = common.verdict(ratios, [d["target_ratio"]] * len(ratios), "every_repeat", side="greater")
    lines += [""] + common.claims_table([common.claim_row(
        f"FAT trains at >= {d['target_ratio']}x DeepFM's examples/s (MovieLens configs, CPU)",
        f"median ratio {np.median(ratios):.3f} (per repeat {', '.join(f'{x:.3f}' for x in ratios)})", v)])
    common.write_page("fat_speed.md", lines)


if __name__ == "__main__":
    main()
