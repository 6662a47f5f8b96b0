"""The seed CTR models on MovieLens-100K with behaviours, against DNN and DIN.

    python benchmarks/ctr_zoo.py zoo [--seeds 0 1 2]    # every model: AUC / GAUC / logloss, params, examples/s
    python benchmarks/ctr_zoo.py apg [--repeats 5]      # APG's step time and memory against plain and naive generation
    python benchmarks/ctr_zoo.py fscd [--seeds 0 1 2]   # FSCD: effectiveness against cost as the complexity weight varies
    python benchmarks/ctr_zoo.py doc                    # rewrite docs/results/ctr_zoo.md

Every row is `train_and_evaluate` (what `train.py` does) on `configs/<model>_movielens.py`
(dataset.variant='history': 50 earlier rated items per row, leakage-free, plus title and
genres), early stopping on valid AUC. "DNN (no history)" reads the same data but not the
sequence. PCF-GNN and its explicit-statistics baseline add six cross features to that DNN.

APG: one jitted train call of 20 steps (batch 1024), median of `--repeats`, and the compiled
call's temporary memory (XLA's `memory_analysis`), for DNN / DCNv2, their APG forms, and APG
with the naive generator (a full N x M weight per instance, the paper's baseline).

FSCD: the gated model (`model.name='fscd'`) is trained at each complexity weight; the fields
with keep probability > 0.5 are selected, and a light pre-ranking DNN (hidden 64) is retrained
on them (`config.fields`); random subsets of the same cost are the baseline.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import common
from jaxrec.data import batching
from jaxrec.embedding import field_names
from jaxrec.models.ctr.fscd import field_costs, keep_probabilities, select_fields
from jaxrec.pretrain.cross_features import CrossOptions, add_cross_features
from jaxrec.train.cli import load_config_file
from jaxrec.train.config import build_dataset
from jaxrec.train.experiment import build
from jaxrec.train.loop import train_and_evaluate

PARTS = ("zoo", "apg", "fscd")
LAMBDAS = (0.003, 0.01, 0.015, 0.02, 0.03, 0.1)


def config(file: str, seed: int, data_dir: str, **model):
    """`configs/<file>_movielens.py` at `seed`, with `model` keys overridden (`name` included)."""
    c = load_config_file(str(common.ROOT / "configs" / f"{file}_movielens.py"))
    c.dataset.data_dir, c.seed, c.train.progress_bar = data_dir, seed, False
    for k, v in model.items():
        c.model[k] = v
    return c


def rows(data_dir: str) -> dict:
    """Row name -> seed -> config."""
    def dcnv2(seed):
        c = config("dnn_history", seed, data_dir)
        c.model = type(c.model)({"name": "dcnv2", "embed_dim": 16, "hidden": (256, 128), "num_cross": 2})
        return c

    def explicit(seed):
        c = config("pcf_gnn", seed, data_dir)
        c.cross_features.method = "explicit"
        return c

    def ciubm_ids_only(seed):
        return config("ciubm", seed, data_dir, use_content=False)

    return {
        "DNN (no history)": lambda s: config("dnn_history", s, data_dir),
        "DCNv2 (no history)": dcnv2,
        "DIN": lambda s: config("din", s, data_dir),
        "GIN": lambda s: config("gin", s, data_dir),
        "CiUBM (MIM)": lambda s: config("ciubm", s, data_dir),
        "CiUBM, ID branch only": ciubm_ids_only,
        "CiUBM, no C-SFT": lambda s: config("ciubm", s, data_dir, content_steps=(200, 0)),
        "APG-DNN": lambda s: config("apg_dnn", s, data_dir),
        "APG-DCNv2": lambda s: config("apg_dcnv2", s, data_dir),
        "DNN + PCF-GNN cross features": lambda s: config("pcf_gnn", s, data_dir),
        "DNN + explicit cross statistics": explicit,
        "FSCD (gated DNN, lambda 0.01)": lambda s: config("dnn_history", s, data_dir, name="fscd", complexity_weight=0.01),
    }


def part_zoo(args) -> dict:
    """Every row x seed; runs already in `benchmarks/results/ctr_zoo_zoo.json` are kept (resume),
    and the file is rewritten after each run."""
    dataset = build_dataset(config("din", 0, args.data_dir))
    path = common.RESULTS / "ctr_zoo_zoo.json"
    out = json.loads(path.read_text())["runs"] if path.is_file() and args.resume else []
    for name, make in rows(args.data_dir).items():
        if args.only and name not in args.only:
            continue
        for seed in args.seeds:
            if any(r["model"] == name and r["seed"] == seed for r in out):
                continue
            c = make(seed)
            r = common.train_summary(c, dataset)
            out.append({"model": name, "seed": seed, "config": c.model.to_dict(), **r})
            common.write_json("ctr_zoo_zoo", {"seeds": args.seeds, "runs": out, "partial": True})
            print(f"{name} seed {seed}: test auc {r['test']['auc']:.4f} gauc {r['test']['gauc']:.4f} "
                  f"logloss {r['test']['logloss']:.4f}, {r['train_examples_per_sec'] or 0:,.0f} ex/s", flush=True)
    _, report = add_cross_features(dataset, CrossOptions())  # storage of the cross features, both ways
    memory = {"pcf_gnn": report["bytes"], "explicit": report["explicit_table_bytes"], "observed_pairs": report["observed_pairs"]}
    return {"seeds": args.seeds, "runs": out, "pcf_memory": memory}


def part_apg(args) -> dict:
    dataset = build_dataset(config("din", 0, args.data_dir))
    variants = {
        "DNN": ("dnn", {}), "APG-DNN": ("apg_dnn", {}), "APG-DNN, over-parameterised (P=64)": ("apg_dnn", {"overparam": 64}),
        "APG-DNN, naive generator": ("apg_dnn", {"low_rank": False}),
        "DCNv2": ("dcnv2", {"num_cross": 2}), "APG-DCNv2": ("apg_dcnv2", {}), "APG-DCNv2, naive generator": ("apg_dcnv2", {"low_rank": False}),
    }
    out = []
    for name, (model, opts) in variants.items():
        c = config("dnn_history", 0, args.data_dir)
        c.model = type(c.model)({"name": model, "embed_dim": 16, "hidden": (256, 128), **opts})
        c.train.steps_per_call = 20
        exp = build(c, dataset)
        state = exp.init_state()
        chunk = next(iter(batching.train_stream(exp.dataset.columns("train"), int(c.train.batch_size), 20, 0, 0, 20)))[1]
        compiled = exp.train_steps.lower(state, chunk).compile()
        memory = compiled.memory_analysis()
        state, _ = exp.train_steps(state, chunk)  # warm
        times = []
        for _ in range(args.repeats):
            tic = time.perf_counter()
            state, o = exp.train_steps(state, chunk)
            jax.block_until_ready(o["loss"])
            times.append(time.perf_counter() - tic)
        dense = sum(int(x.size) for x in jax.tree.leaves(state.params["dense"]))
        out.append({"variant": name, "step_ms": 1000 * float(np.median(times)) / 20, "times": times, "dense_params": dense,
                    "temp_bytes": int(memory.temp_size_in_bytes) if memory else None})
        print(f"{name}: {out[-1]['step_ms']:.2f} ms/step, temp {out[-1]['temp_bytes']:,} B, {dense:,} dense params", flush=True)
    return {"repeats": args.repeats, "variants": out}


def part_fscd(args) -> dict:
    dataset = build_dataset(config("din", 0, args.data_dir))
    fields = field_names(dataset.features)
    costs = field_costs(tuple(f for f in dataset.features if f.name in fields), 16)
    rng = np.random.default_rng(0)
    out = {"fields": fields, "costs": costs.tolist(), "selections": [], "random": []}

    def light(seed, chosen):
        c = config("dnn_history", seed, args.data_dir, hidden=(64,))
        c.fields = tuple(chosen)
        return common.train_summary(c, dataset)

    for seed in args.seeds:
        for lam in LAMBDAS:
            c = config("dnn_history", seed, args.data_dir, name="fscd", complexity_weight=lam)
            exp = build(c, dataset)
            with tempfile.TemporaryDirectory() as wd:
                train_and_evaluate(c, wd, dataset=dataset)
                params, _ = exp.checkpointer(Path(wd) / "best", keep=1).restore(exp.init_state(place=False).params)
            delta = keep_probabilities(params["dense"])
            chosen = [f for f, d in zip(fields, delta) if d > 0.5] or [fields[int(np.argmax(delta))]]
            cost = float(sum(costs[fields.index(f)] for f in chosen))
            r = light(seed, chosen)
            out["selections"].append({"seed": seed, "lambda": lam, "keep": delta.tolist(), "chosen": chosen, "cost": cost, **r})
            print(f"seed {seed} lambda {lam}: {len(chosen)} fields {chosen}, cost {cost:.2f}: light test auc {r['test']['auc']:.4f}", flush=True)
            # a random subset of (about) the same cost: fields in a random order while they fit
            order = np.empty(len(fields))
            order[rng.permutation(len(fields))] = -np.arange(len(fields))  # select_fields takes the largest first
            pick = select_fields(fields, order, costs, cost)
            spent = float(sum(costs[fields.index(f)] for f in pick))
            r = light(seed, pick)
            out["random"].append({"seed": seed, "lambda": lam, "chosen": pick, "cost": spent, **r})
        r = light(seed, fields)
        out["selections"].append({"seed": seed, "lambda": 0.0, "chosen": fields, "cost": float(costs.sum()), **r})
    return out


# ---------------------------------------------------------------------------------------- page


def zoo_section(d: dict) -> list[str]:
    by = {}
    for r in d["runs"]:
        by.setdefault(r["model"], []).append(r)
    stats = {m: {k: common.mean_std([r["test"][k] for r in rs]) for k in ("auc", "gauc", "logloss")} for m, rs in by.items()}
    lines = ["## Every model (MovieLens-100K with behaviours)", "",
             f"{len(d['seeds'])} seeds ({', '.join(map(str, d['seeds']))}); test metrics at the best valid epoch; "
             "examples/s is the median train throughput (2 CPU cores).", "",
             "| model | test AUC | test GAUC | test logloss | dense params | embedding params | train examples/s |",
             "|---|---|---|---|---|---|---|"]
    for m, rs in by.items():
        s = stats[m]
        lines.append(f"| {m} | {s['auc'][0]:.4f} ± {s['auc'][1]:.4f} | {s['gauc'][0]:.4f} ± {s['gauc'][1]:.4f} | "
                     f"{s['logloss'][0]:.4f} | {rs[0]['num_params']['dense']:,} | {rs[0]['num_params']['sparse']:,} | "
                     f"{np.median([r['train_examples_per_sec'] or 0 for r in rs]):,.0f} |")
    return lines + [""]


def apg_section(d: dict) -> list[str]:
    v = {x["variant"]: x for x in d["variants"]}
    lines = ["## APG: time and memory", "",
             f"One jitted call of 20 train steps (batch 1024), median of {d['repeats']} repeats, and XLA's temporary "
             "memory of the compiled call. Ratios are within this one run.", "",
             "| variant | ms / step | temporary memory | dense params |", "|---|---|---|---|"]
    for x in d["variants"]:
        lines.append(f"| {x['variant']} | {x['step_ms']:.2f} | {x['temp_bytes']:,} B | {x['dense_params']:,} |")
    lines.append("")
    for base in ("DNN", "DCNv2"):
        apg, naive = v[f"APG-{base}"], v[f"APG-{base}, naive generator"]
        lines.append(f"- APG-{base} against the naive generator: time {100 * (apg['step_ms'] / naive['step_ms'] - 1):+.1f}%, "
                     f"memory {100 * (apg['temp_bytes'] / naive['temp_bytes'] - 1):+.1f}% (paper: -38.7% time, -96.6% memory); "
                     f"against plain {base}: time x{apg['step_ms'] / v[base]['step_ms']:.2f}, memory x{apg['temp_bytes'] / v[base]['temp_bytes']:.2f}.")
    return lines + [""]


def fscd_section(d: dict) -> list[str]:
    lines = ["## FSCD: effectiveness against cost", "",
             "Field costs c_j (`field_costs`: complexity 1 per field + log-cardinality share): " +
             ", ".join(f"{f} {c:.2f}" for f, c in zip(d["fields"], d["costs"])) + ".", "",
             "| complexity weight | fields kept (seed 0) | cost (mean) | light model test AUC | random subset, same cost |",
             "|---|---|---|---|---|"]
    for lam in (*LAMBDAS, 0.0):
        sel = [s for s in d["selections"] if s["lambda"] == lam]
        rnd = [s for s in d["random"] if s["lambda"] == lam]
        m = common.mean_std([s["test"]["auc"] for s in sel])
        rand = f"{common.mean_std([s['test']['auc'] for s in rnd])[0]:.4f} (cost {np.mean([s['cost'] for s in rnd]):.2f})" if rnd else "-"
        label = f"{lam:g}" if lam else "all fields"
        lines.append(f"| {label} | {', '.join(sel[0]['chosen'])} | {np.mean([s['cost'] for s in sel]):.2f} | "
                     f"{m[0]:.4f} ± {m[1]:.4f} | {rand} |")
    return lines + ["", "![FSCD](ctr_zoo_fscd.png)", ""]


def plot_fscd(d: dict) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, marker in (("selections", "FSCD selection", "o"), ("random", "random subset, same cost", "x")):
        pts = [(s["cost"], s["test"]["auc"]) for s in d[key]]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
    ax.set_xlabel("cost of the kept fields")
    ax.set_ylabel("light model test AUC")
    ax.set_title("FSCD on MovieLens-100K (one point per seed and weight)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(common.DOCS / "ctr_zoo_fscd.png", dpi=120)
    plt.close(fig)


def claims(data: dict) -> list[str]:
    """Each paper's claim: reproduced / not reproduced / not testable here, with the numbers.
    Model comparisons are paired by seed (same split, same seed): 'reproduced' when every
    seed's difference is positive, 'not reproduced' when every one is negative, else 'mixed'."""
    runs = {}
    for r in data.get("zoo", {}).get("runs", []):
        runs.setdefault(r["model"], {})[r["seed"]] = r["test"]

    def paired(a: str, b: str, k: str) -> tuple[str, str]:
        seeds = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
        d = np.array([runs[a][s][k] - runs[b][s][k] for s in seeds])
        verdict = "reproduced" if np.all(d > 0) else ("not reproduced" if np.all(d < 0) else "mixed: within seed noise")
        return f"{d.mean():+.4f} (per seed {', '.join(f'{x:+.4f}' for x in d)})", verdict

    base = "DNN (no history)"
    lines = ["## Each paper's claim", "", "Differences are paired by seed (model minus reference, test split).", "",
             "| claim | here | verdict |", "|---|---|---|"]
    for m in ("DIN", "GIN", "CiUBM (MIM)"):
        if m in runs and base in runs:
            lines.append(f"| {m} with history beats DNN without history (GAUC) | %s | %s |" % paired(m, base, "gauc"))
    if "GIN" in runs and "DIN" in runs:
        lines.append("| GIN beats DIN (AUC; the paper: offline AUC gain, online CTR gain) | %s | %s |" % paired("GIN", "DIN", "auc"))
    if "CiUBM (MIM)" in runs:
        for ref in ("CiUBM, ID branch only", "CiUBM, no C-SFT"):
            if ref in runs:
                lines.append(f"| CiUBM's content interest / C-SFT helps: vs {ref} (AUC) | %s | %s |" % paired("CiUBM (MIM)", ref, "auc"))
        lines.append("| MIM: +14.14% CTR, +4.12% RPM online | - | not testable here (online A/B test) |")
    for m, ref in (("APG-DNN", "DNN (no history)"), ("APG-DCNv2", "DCNv2 (no history)")):
        if m in runs and ref in runs:
            lines.append(f"| {m} beats {ref.split(' ')[0]} (AUC; paper up to +0.2%%) | %s | %s |" % paired(m, ref, "auc"))
    if "apg" in data:
        v = {x["variant"]: x for x in data["apg"]["variants"]}
        t = v["APG-DNN"]["step_ms"] / v["APG-DNN, naive generator"]["step_ms"] - 1
        mem = v["APG-DNN"]["temp_bytes"] / v["APG-DNN, naive generator"]["temp_bytes"] - 1
        lines.append(f"| APG: -38.7% time, -96.6% memory against naive generation | {100 * t:+.1f}% time, {100 * mem:+.1f}% memory (APG-DNN) | "
                     f"{'reproduced' if t < 0 and mem < -0.5 else 'not reproduced'} (direction; CPU here) |")
    for ref in ("DNN (no history)", "DNN + explicit cross statistics"):
        if "DNN + PCF-GNN cross features" in runs and ref in runs:
            lines.append(f"| PCF-GNN's cross features beat {ref} (AUC) | %s | %s |" % paired("DNN + PCF-GNN cross features", ref, "auc"))
    if "pcf_memory" in data.get("zoo", {}):
        m = data["zoo"]["pcf_memory"]
        x = 1 - m["pcf_gnn"] / m["explicit"]
        lines.append(f"| PCF-GNN: > 50% storage reduction against the explicit cross table | {m['pcf_gnn']:,} B of parameters "
                     f"vs {m['explicit']:,} B for {m['observed_pairs']:,} pairs ({100 * x:.0f}% less) | {'reproduced' if x > 0.5 else 'not reproduced'} |")
    if "fscd" in data:
        sel = [s for s in data["fscd"]["selections"] if s["lambda"]]
        rnd = data["fscd"]["random"]
        x = np.mean([s["test"]["auc"] for s in sel]) - np.mean([s["test"]["auc"] for s in rnd])
        lines.append(f"| FSCD's selection beats other subsets at the same cost (here: random, mean over weights and seeds) | "
                     f"{x:+.4f} AUC | {'reproduced' if x > 0 else 'not reproduced'} |")
    return lines + [""]


def write_doc() -> None:
    data = {p: json.loads(f.read_text()) for p in PARTS if (f := common.RESULTS / f"ctr_zoo_{p}.json").is_file()}
    lines = ["# The seed CTR models on MovieLens-100K with behaviours", "",
             "Generated by `benchmarks/ctr_zoo.py` (module docstring: the protocol). Commands and machines:", ""]
    lines += [f"- {p}: `{d['command']}` on {common.machine_line(d['machine'])}" for p, d in data.items()] + [""]
    if "zoo" in data:
        lines += zoo_section(data["zoo"])
    lines += claims(data)
    if "apg" in data:
        lines += apg_section(data["apg"])
    if "fscd" in data:
        plot_fscd(data["fscd"])
        lines += fscd_section(data["fscd"])
    common.write_page("ctr_zoo.md", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=PARTS + ("doc",))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="zoo: only these rows")
    parser.add_argument("--resume", action="store_true", help="zoo: keep the runs already in its JSON")
    parser.add_argument("--data_dir", default=common.default_data_dir())
    args = parser.parse_args()
    if args.part != "doc":
        payload = {"part_zoo": part_zoo, "part_apg": part_apg, "part_fscd": part_fscd}[f"part_{args.part}"](args)
        payload.update(command=common.command(), machine=common.machine())
        common.write_json(f"ctr_zoo_{args.part}", payload)
    write_doc()


if __name__ == "__main__":
    main()
