"""The seed CTR models on MovieLens-100K with behaviours, against DNN and DIN.

    python benchmarks/ctr_zoo.py zoo [--seeds 0 1 2] [--only ROW ...] [--resume]  # rows: AUC / GAUC / logloss, params, examples/s
    python benchmarks/ctr_zoo.py apg [--repeats 7]      # APG's step time and memory against the plain models (and naive generation)
    python benchmarks/ctr_zoo.py fscd [--seeds 0 1 2] [--lambdas ...] [--no_all_fields]  # FSCD: effectiveness against cost, against random subsets of equal cost
    python benchmarks/ctr_zoo.py doc                    # rewrite docs/results/ctr_zoo.md

The protocol is benchmarks/common.py's. Every row is `common.fit` (what `train.py` does, test
never evaluated) on `configs/<model>_movielens.py` (dataset.variant='history': 50 earlier rated
items per row, leakage-free, plus title and genres), early stopping on valid AUC; test is read
once per row and seed by `common.final_test`. "DNN (no history)" reads the same data but not the
sequence. PCF-GNN and its explicit-statistics baseline add six cross features to that DNN.

DIN: its attention normalisation ('none', the paper's, or 'softmax') and MLP activation ('prelu'
or the paper's 'dice') are chosen by mean valid GAUC over the seeds (`DIN_CANDIDATES`; GAUC is
the metric of DIN's claim); only the chosen candidate's runs read test.

Claims and rules, fixed before the runs (`common.RULES`):
- model comparisons (history models vs DNN on GAUC, GIN vs DIN, CiUBM ablations, APG vs its plain
  model, PCF-GNN vs its baselines, all on AUC unless said): every_seed, paired by seed;
- APG time and memory against the plain model (the paper's baseline) and, as an extra row,
  against the naive generator: every_repeat on the step-time ratio, measured interleaved in the
  same run; memory is XLA's compiled temporary bytes (deterministic, one figure);
- FSCD beats random field subsets of equal cost (within half the cheapest field's cost): every
  pair (seed, complexity weight) on the claimed side (every_seed).

APG: one jitted train call of 20 steps (batch 1024); each repeat times every variant once, in
turn, so load hits them alike; and the compiled call's temporary memory (XLA's
`memory_analysis`), for DNN / DCNv2, their APG forms, and APG with the naive generator (a full
N x M weight per instance).

FSCD: the gated model (`model.name='fscd'`) is trained at each complexity weight; the fields
with keep probability > 0.5 are selected, and a light pre-ranking DNN (hidden 64) is retrained
on them (`config.fields`). The baseline: a subset drawn uniformly among all subsets whose cost is
within half the cheapest field's cost of FSCD's selection (`equal_cost_subset`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import common
import jax
import numpy as np

from jaxrec.data import batching
from jaxrec.embedding import field_names
from jaxrec.models.ctr.fscd import field_costs, keep_probabilities
from jaxrec.pretrain.cross_features import CrossOptions, add_cross_features
from jaxrec.train.cli import load_config_file
from jaxrec.train.config import build_dataset
from jaxrec.train.experiment import build

PARTS = ("zoo", "apg", "fscd")
LAMBDAS = (0.01, 0.015, 0.03)  # the three distinct selections of the earlier sweep (5.84, 3.19, 1.88)
DIN_CANDIDATES = {  # key -> DIN model options; chosen on mean valid GAUC
    "none, Dice (the paper's)": {"normalize": "none", "activation": "dice"},
    "none, PReLU": {"normalize": "none", "activation": "prelu"},
    "softmax, PReLU": {"normalize": "softmax", "activation": "prelu"},
}
PRE_PROTOCOL = "ctr_zoo_zoo_pre_protocol.json"  # the rows' earlier run (test at the best valid epoch; DIN's normalisation chosen on test)


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
        "DIN": None,  # chosen among DIN_CANDIDATES on valid (`din_row`)
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


def summary(r: dict) -> dict:
    """The JSON fields of a `fit` run."""
    return {k: r[k] for k in ("valid", "best_epoch", "epochs_run", "num_params", "train_examples_per_sec")}


def din_row(seeds, data_dir: str, dataset, save=None) -> tuple[list[dict], dict]:
    """DIN's candidates (`DIN_CANDIDATES`) fitted at every seed (seed-major: each seed runs every
    candidate in turn), one chosen by mean valid GAUC; test is read for the chosen one only.
    `save(record)` is called after each run with the selection record so far (valid only).
    Returns (the chosen runs with test, the selection record)."""
    fits = {key: [] for key in DIN_CANDIDATES}
    record = {"chosen": None, "metric": "gauc", "valid": {key: [] for key in DIN_CANDIDATES}}
    for seed in seeds:
        for key, opts in DIN_CANDIDATES.items():
            r = common.fit(config("din", seed, data_dir, **opts), dataset)
            fits[key].append(r)
            record["valid"][key].append({"seed": seed, **summary(r)})
            print(f"DIN [{key}] seed {seed}: valid auc {r['valid']['auc']:.4f} gauc {r['valid']['gauc']:.4f}, "
                  f"best epoch {r['best_epoch']}", flush=True)
            if save:
                save(record)
    pick, means = common.choose(fits, metric="gauc")
    record.update(chosen=pick, valid_means=means)
    for key, runs in fits.items():
        if key != pick:
            for r in runs:
                common.discard(r)
    out = []
    for seed, r in zip(seeds, fits[pick]):
        test = common.final_test(f"DIN [{pick}]/seed{seed}", r, dataset)
        out.append({"model": "DIN", "seed": seed, "config": r["config"].model.to_dict(), "test": test, **summary(r)})
    return out, record


def part_zoo(args) -> dict:
    """Every row x seed (`--only`: those rows); with `--resume`, rows already in
    `benchmarks/results/ctr_zoo_zoo.json` are kept, and the file is rewritten after each row."""
    dataset = build_dataset(config("din", 0, args.data_dir))
    path = common.RESULTS / "ctr_zoo_zoo.json"
    old = json.loads(path.read_text()) if path.is_file() and args.resume else {}
    out, din = old.get("runs", []), old.get("din_selection")
    commands = old.get("commands", [old["command"]] if "command" in old else []) + [common.command()]
    earlier_reads = old.get("test_reads_earlier", []) + old.get("test_reads", [])  # the ledgers of the resumed runs

    def save(din_record=None) -> None:
        common.write_json("ctr_zoo_zoo", {"seeds": args.seeds, "runs": out, "din_selection": din_record or din, "partial": True,
                                          "commands": commands, "test_reads_earlier": earlier_reads,
                                          "command": common.command(), "machine": common.machine()})

    for name, make in rows(args.data_dir).items():
        if (args.only and name not in args.only) or any(r["model"] == name for r in out):
            continue
        if name == "DIN":
            runs, din = din_row(args.seeds, args.data_dir, dataset, save)
            out += runs
        else:
            for seed in args.seeds:
                c = make(seed)
                r = common.fit(c, dataset)
                test = common.final_test(f"{name}/seed{seed}", r, dataset)
                out.append({"model": name, "seed": seed, "config": c.model.to_dict(), "test": test, **summary(r)})
                print(f"{name} seed {seed}: test auc {test['auc']:.4f} gauc {test['gauc']:.4f} logloss {test['logloss']:.4f}, "
                      f"{r['train_examples_per_sec'] or 0:,.0f} ex/s", flush=True)
        save()
    _, report = add_cross_features(dataset, CrossOptions())  # storage of the cross features, both ways
    memory = {"pcf_gnn": report["bytes"], "explicit": report["explicit_table_bytes"], "observed_pairs": report["observed_pairs"]}
    return {"seeds": args.seeds, "runs": out, "din_selection": din, "pcf_memory": memory, "commands": commands,
            "test_reads_earlier": earlier_reads}


def part_apg(args) -> dict:
    """Each variant's compiled 20-step train call; every repeat times all variants in turn."""
    dataset = build_dataset(config("din", 0, args.data_dir))
    variants = {
        "DNN": ("dnn", {}), "APG-DNN": ("apg_dnn", {}), "APG-DNN, over-parameterised (P=64)": ("apg_dnn", {"overparam": 64}),
        "APG-DNN, naive generator": ("apg_dnn", {"low_rank": False}),
        "DCNv2": ("dcnv2", {"num_cross": 2}), "APG-DCNv2": ("apg_dcnv2", {}), "APG-DCNv2, naive generator": ("apg_dcnv2", {"low_rank": False}),
    }
    built = {}
    for name, (model, opts) in variants.items():
        c = config("dnn_history", 0, args.data_dir)
        c.model = type(c.model)({"name": model, "embed_dim": 16, "hidden": (256, 128), **opts})
        c.train.steps_per_call = 20
        exp = build(c, dataset)
        state = exp.init_state()
        chunk = next(iter(batching.train_stream(exp.dataset.columns("train"), int(c.train.batch_size), 20, 0, 0, 20)))[1]
        memory = exp.train_steps.lower(state, chunk).compile().memory_analysis()
        state, o = exp.train_steps(state, chunk)  # warm
        jax.block_until_ready(o["loss"])
        built[name] = [exp, state, chunk]
        built[name].append({"variant": name, "times": [], "dense_params": sum(int(x.size) for x in jax.tree.leaves(state.params["dense"])),
                            "temp_bytes": int(memory.temp_size_in_bytes) if memory else None})
    for _ in range(args.repeats):
        for name, b in built.items():
            exp, state, chunk, rec = b
            tic = time.perf_counter()
            b[1], o = exp.train_steps(state, chunk)
            jax.block_until_ready(o["loss"])
            rec["times"].append(time.perf_counter() - tic)
    out = []
    for name, (*_, rec) in built.items():
        rec["step_ms"] = 1000 * float(np.median(rec["times"])) / 20
        out.append(rec)
        print(f"{name}: {rec['step_ms']:.2f} ms/step, temp {rec['temp_bytes']:,} B, {rec['dense_params']:,} dense params", flush=True)
    return {"repeats": args.repeats, "variants": out}


def equal_cost_subset(fields: list[str], costs: np.ndarray, target: float, tolerance: float, rng) -> list[str]:
    """A subset drawn uniformly among all non-empty subsets of `fields` whose summed cost is within
    `tolerance` of `target` (all 2^F enumerated: F = 12 here). ValueError when none is."""
    ok = [s for n in range(1, len(fields) + 1) for s in itertools.combinations(range(len(fields)), n)
          if abs(float(costs[list(s)].sum()) - target) <= tolerance]
    if not ok:
        raise ValueError(f"no subset costs {target:.2f} +- {tolerance:.2f}")
    return [fields[j] for j in ok[rng.integers(len(ok))]]


def part_fscd(args) -> dict:
    dataset = build_dataset(config("din", 0, args.data_dir))
    fields = field_names(dataset.features)
    costs = field_costs(tuple(f for f in dataset.features if f.name in fields), 16)
    tolerance = float(costs.min()) / 2
    rng = np.random.default_rng(0)
    out = {"fields": fields, "costs": costs.tolist(), "tolerance": tolerance, "selections": [], "random": []}
    path = common.RESULTS / "ctr_zoo_fscd.json"
    if args.resume and path.is_file():  # keep the (seed, weight) pairs already run, and their test-read ledger
        old = json.loads(path.read_text())
        out.update(selections=old["selections"], random=old["random"], commands=old.get("commands", [old["command"]]),
                   test_reads_earlier=old.get("test_reads_earlier", []) + old.get("test_reads", []))
        rng = np.random.default_rng(len(old["random"]))  # fresh draws, not a replay of the first run's
    out["commands"] = out.get("commands", []) + [common.command()]

    def light(label: str, seed: int, chosen) -> dict:
        c = config("dnn_history", seed, args.data_dir, hidden=(64,))
        c.fields = tuple(chosen)
        r = common.fit(c, dataset)
        return {"test": common.final_test(f"{label}/seed{seed}", r, dataset), **summary(r)}

    def cost_of(chosen) -> float:
        return float(sum(costs[fields.index(f)] for f in chosen))

    for seed in args.seeds:
        for lam in args.lambdas:
            if any(x["seed"] == seed and x["lambda"] == lam for x in out["selections"]):
                continue
            c = config("dnn_history", seed, args.data_dir, name="fscd", complexity_weight=lam)
            exp = build(c, dataset)
            gated = common.fit(c, dataset)
            params, _ = exp.checkpointer(Path(gated["workdir"]) / "best", keep=1).restore(exp.init_state(place=False).params)
            common.discard(gated)
            delta = keep_probabilities(params["dense"])
            chosen = [f for f, d in zip(fields, delta) if d > 0.5] or [fields[int(np.argmax(delta))]]
            cost = cost_of(chosen)
            r = light(f"FSCD lambda {lam}", seed, chosen)
            out["selections"].append({"seed": seed, "lambda": lam, "keep": delta.tolist(), "chosen": chosen, "cost": cost, **r})
            pick = equal_cost_subset(fields, costs, cost, tolerance, rng)
            q = light(f"random subset, lambda {lam}", seed, pick)
            out["random"].append({"seed": seed, "lambda": lam, "chosen": pick, "cost": cost_of(pick), **q})
            print(f"seed {seed} lambda {lam}: FSCD {chosen} cost {cost:.2f} test auc {r['test']['auc']:.4f}; "
                  f"random {pick} cost {cost_of(pick):.2f} test auc {q['test']['auc']:.4f}", flush=True)
        if args.no_all_fields or any(x["seed"] == seed and x["lambda"] == 0.0 for x in out["selections"]):
            continue
        r = light("all fields", seed, fields)
        out["selections"].append({"seed": seed, "lambda": 0.0, "chosen": fields, "cost": float(costs.sum()), **r})
    return out


# ---------------------------------------------------------------------------------------- page


def by_model(d: dict | None) -> dict:
    """{row name: {seed: run}} of a zoo JSON."""
    out = {}
    for r in (d or {}).get("runs", []):
        out.setdefault(r["model"], {})[r["seed"]] = r
    return out


def rows_table(runs: dict) -> list[str]:
    lines = ["| model | test AUC | test GAUC | test logloss | best epochs | dense params | embedding params | train examples/s |",
             "|---|---|---|---|---|---|---|---|"]
    for m, by_seed in runs.items():
        rs = [by_seed[s] for s in sorted(by_seed)]
        st = {k: common.mean_std([r["test"][k] for r in rs]) for k in ("auc", "gauc", "logloss")}
        lines.append(f"| {m} | {st['auc'][0]:.4f} ± {st['auc'][1]:.4f} | {st['gauc'][0]:.4f} ± {st['gauc'][1]:.4f} | "
                     f"{st['logloss'][0]:.4f} | {','.join(str(r.get('best_epoch', '-')) for r in rs)} | {rs[0]['num_params']['dense']:,} | "
                     f"{rs[0]['num_params']['sparse']:,} | {np.median([r['train_examples_per_sec'] or 0 for r in rs]):,.0f} |")
    return lines + [""]


def zoo_section(d: dict, pre: dict | None) -> list[str]:
    lines = ["## Every model (MovieLens-100K with behaviours)", "",
             f"Rerun under the protocol: {len(d['seeds'])} seeds ({', '.join(map(str, d['seeds']))}); test read once per row and seed, "
             "at the best valid epoch; examples/s is the median train throughput (2 shared CPU cores).", ""]
    lines += rows_table(by_model(d))
    sel = d.get("din_selection")
    if sel:
        done = sorted({r["seed"] for runs in sel["valid"].values() for r in runs})
        state = (f"chosen by mean valid {sel['metric'].upper()}: **{sel['chosen']}** (only its runs read test)" if sel["chosen"] else
                 f"**the selection did not finish** (seeds run: {', '.join(map(str, done)) or 'none'}): nothing chosen, DIN's test not read")
        lines += ["### DIN: attention normalisation and activation, chosen on valid", "",
                  f"Mean valid metrics over the seeds run; {state}.", "",
                  "| candidate (normalisation, activation) | seeds | valid AUC | valid GAUC | valid GAUC per seed | best epochs |",
                  "|---|---|---|---|---|---|"]
        for key, runs in sel["valid"].items():
            if not runs:
                lines.append(f"| {key} | - | - | - | - | - |")
                continue
            auc, gauc = (common.mean_std([r["valid"][k] for r in runs]) for k in ("auc", "gauc"))
            per_seed = ", ".join(f"{r['valid']['gauc']:.4f}" for r in runs)
            lines.append(f"| {key}{' (chosen)' if key == sel['chosen'] else ''} | {','.join(str(r['seed']) for r in runs)} | "
                         f"{auc[0]:.4f} ± {auc[1]:.4f} | {gauc[0]:.4f} ± {gauc[1]:.4f} | "
                         f"{per_seed} | {','.join(str(r['best_epoch']) for r in runs)} |")
        lines.append("")
    old = {m: v for m, v in by_model(pre).items() if m not in by_model(d)}
    if old:
        lines += ["### Rows not rerun under the protocol", "",
                  f"From the earlier run (`{pre['command']}`, commit {pre['machine']['git_commit']}): test at the best valid epoch, no "
                  "choice made on these rows' test, but the DIN they were compared with had its normalisation chosen on test, "
                  "and GIN and CiUBM's attention settings follow that DIN. Kept for reference; their claims are marked not rerun.", ""]
        lines += rows_table(old)
    return lines


def apg_ratio(v: dict, a: str, b: str) -> tuple[np.ndarray, float]:
    """Per-repeat step-time ratios a / b (paired: the same repeat) and the memory ratio."""
    return np.asarray(v[a]["times"]) / np.asarray(v[b]["times"]), v[a]["temp_bytes"] / v[b]["temp_bytes"]


def apg_section(d: dict) -> list[str]:
    v = {x["variant"]: x for x in d["variants"]}
    lines = ["## APG: time and memory", "",
             f"One jitted call of 20 train steps (batch 1024); {d['repeats']} repeats, each timing every variant once in turn "
             "(so load hits them alike); XLA's temporary memory of the compiled call. Ratios are within this one run; on a shared, "
             "loaded host the time ratios spread widely (shown per repeat), the memory figures are deterministic.", "",
             "| variant | ms / step (median) | min - max over repeats | temporary memory | dense params |", "|---|---|---|---|---|"]
    for x in d["variants"]:
        t = 1000 * np.asarray(x["times"]) / 20
        lines.append(f"| {x['variant']} | {x['step_ms']:.2f} | {t.min():.2f} - {t.max():.2f} | {x['temp_bytes']:,} B | {x['dense_params']:,} |")
    lines.append("")
    for base in ("DNN", "DCNv2"):
        for ref in (base, f"APG-{base}, naive generator"):
            t, m = apg_ratio(v, f"APG-{base}", ref)
            lines.append(f"- APG-{base} against {ref}: time x{np.median(t):.2f} (per repeat {t.min():.2f} - {t.max():.2f}), memory x{m:.2f}.")
    return lines + [""]


def fscd_section(d: dict) -> list[str]:
    lines = ["## FSCD: effectiveness against cost", "",
             "Field costs c_j (`field_costs`: complexity 1 per field + log-cardinality share): " +
             ", ".join(f"{f} {c:.2f}" for f, c in zip(d["fields"], d["costs"])) + ". "
             f"Random subsets are drawn uniformly among the subsets whose cost is within {d['tolerance']:.2f} (half the cheapest "
             "field's cost) of FSCD's selection at the same seed and weight.", "",
             "| complexity weight | fields kept (seed 0) | FSCD cost (mean) | light model test AUC | random subset cost (mean) | random subset test AUC | FSCD - random (per seed) |",
             "|---|---|---|---|---|---|---|"]
    lams = sorted({s["lambda"] for s in d["selections"]})
    for lam in [x for x in lams if x] + [x for x in lams if not x]:
        sel = sorted((s for s in d["selections"] if s["lambda"] == lam), key=lambda s: s["seed"])
        rnd = sorted((s for s in d["random"] if s["lambda"] == lam), key=lambda s: s["seed"])
        m = common.mean_std([s["test"]["auc"] for s in sel])
        if rnd:
            q = common.mean_std([s["test"]["auc"] for s in rnd])
            diffs = ", ".join(f"{a['test']['auc'] - b['test']['auc']:+.4f}" for a, b in zip(sel, rnd))
            rand = f"{np.mean([s['cost'] for s in rnd]):.2f} | {q[0]:.4f} ± {q[1]:.4f} | {diffs}"
        else:
            rand = "- | - | -"
        label = f"{lam:g}" if lam else "all fields"
        lines.append(f"| {label} | {', '.join(sel[0]['chosen'])} | {np.mean([s['cost'] for s in sel]):.2f} | "
                     f"{m[0]:.4f} ± {m[1]:.4f} | {rand} |")
    return lines + ["", "![FSCD](ctr_zoo_fscd.png)", ""]


def plot_fscd(d: dict) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, marker in (("selections", "FSCD selection", "o"), ("random", "random subset, equal cost", "x")):
        pts = [(s["cost"], s["test"]["auc"]) for s in d[key]]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
    ax.set_xlabel("cost of the kept fields")
    ax.set_ylabel("light model test AUC")
    ax.set_title("FSCD on MovieLens-100K (one point per seed and weight)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(common.DOCS / "ctr_zoo_fscd.png", dpi=120)
    plt.close(fig)


def claims(data: dict) -> list[dict]:
    """The claims table's rows, by the rules of the module docstring (fixed before the runs).
    Model comparisons use the rerun rows; a comparison whose rows were not rerun shows the earlier
    figure and says so."""
    new, pre = by_model(data.get("zoo")), by_model(data.get("pre"))
    out = []

    def paired(claim: str, a: str, b: str, k: str) -> None:
        for runs, rerun in ((new, True), (pre, False)):
            if a in runs and b in runs:
                seeds = sorted(set(runs[a]) & set(runs[b]))
                v = common.verdict([runs[a][s]["test"][k] for s in seeds], [runs[b][s]["test"][k] for s in seeds], "every_seed")
                if rerun:
                    out.append(common.claim_row(claim, common.fmt_diffs(v), v))
                else:
                    out.append({"claim": claim, "figure": f"{common.fmt_diffs(v)} (earlier run)", "seeds": str(v["n"]), "rule": "-",
                                "verdict": "not rerun under the protocol"})
                return

    base = "DNN (no history)"
    for m in ("DIN", "GIN", "CiUBM (MIM)"):
        paired(f"{m} with history beats DNN without history (test GAUC)", m, base, "gauc")
    paired("GIN beats DIN (test AUC; the paper: offline AUC gain)", "GIN", "DIN", "auc")
    for ref in ("CiUBM, ID branch only", "CiUBM, no C-SFT"):
        paired(f"CiUBM's content interest / C-SFT helps: vs {ref} (test AUC)", "CiUBM (MIM)", ref, "auc")
    out.append(common.claim_row("MIM: +14.14% CTR, +4.12% RPM online", "online A/B test", None))
    for m, ref in (("APG-DNN", base), ("APG-DCNv2", "DCNv2 (no history)")):
        paired(f"{m} beats plain {ref.split(' ')[0]} (test AUC; paper up to +0.2%)", m, ref, "auc")
    if "apg" in data:
        v = {x["variant"]: x for x in data["apg"]["variants"]}
        for base_model in ("DNN", "DCNv2"):
            apg = f"APG-{base_model}"
            for ref, what in ((base_model, f"plain {base_model} (the paper's baseline)"), (f"{apg}, naive generator", "the naive generator (extra row)")):
                t, m = apg_ratio(v, apg, ref)
                vt = common.verdict(t, np.ones_like(t), "every_repeat", side="less")
                vm = common.verdict([m], [1.0], "every_repeat", side="less")
                out.append(common.claim_row(f"{apg} trains faster than {what} (paper: -38.7% time)",
                                            f"x{np.median(t):.2f} time (per repeat {t.min():.2f} - {t.max():.2f})", vt))
                out.append(common.claim_row(f"{apg} needs less memory than {what} (paper: -96.6% memory)",
                                            f"x{m:.2f} memory (compiled temporary bytes, deterministic: one figure)", vm))
    paired("PCF-GNN's cross features beat DNN (no history) (test AUC)", "DNN + PCF-GNN cross features", base, "auc")
    paired("PCF-GNN's cross features beat DNN + explicit cross statistics (test AUC)", "DNN + PCF-GNN cross features",
           "DNN + explicit cross statistics", "auc")
    mem, earlier = (data.get("zoo") or {}).get("pcf_memory"), ""
    if not mem and (data.get("pre") or {}).get("pcf_memory"):
        mem, earlier = data["pre"]["pcf_memory"], " (earlier run; deterministic)"
    if mem:
        x = 1 - mem["pcf_gnn"] / mem["explicit"]
        out.append({"claim": "PCF-GNN: > 50% storage reduction against the explicit cross table",
                    "figure": f"{mem['pcf_gnn']:,} B of parameters vs {mem['explicit']:,} B for {mem['observed_pairs']:,} pairs ({100 * x:.0f}% less){earlier}",
                    "seeds": "-", "rule": "byte count (deterministic), reduction > 50%", "verdict": "reproduced" if x > 0.5 else "not reproduced"})
    if "fscd" in data:
        key = lambda s: (s["lambda"], s["seed"])
        sel = sorted((s for s in data["fscd"]["selections"] if s["lambda"]), key=key)
        rnd = sorted(data["fscd"]["random"], key=key)
        assert [key(s) for s in sel] == [key(s) for s in rnd]
        v = common.verdict([s["test"]["auc"] for s in sel], [s["test"]["auc"] for s in rnd], "every_seed")
        out.append(common.claim_row("FSCD's selection beats other subsets at the same cost (here: random subsets of equal cost, "
                                    "paired by seed and weight; test AUC of the light model)",
                                    f"{common.fmt_diffs(v)}; cost FSCD {np.mean([s['cost'] for s in sel]):.2f} vs random "
                                    f"{np.mean([s['cost'] for s in rnd]):.2f}", v))
    else:
        out.append({"claim": "FSCD's selection beats other subsets at the same cost", "seeds": "-", "rule": "-",
                    "figure": "the earlier run's random subsets were not of equal cost (greedy under FSCD's budget, cheaper)",
                    "verdict": "not rerun under the protocol"})
    return out


def write_doc() -> None:
    data = {p: json.loads(f.read_text()) for p in PARTS if (f := common.RESULTS / f"ctr_zoo_{p}.json").is_file()}
    if "fscd" in data and "tolerance" not in data["fscd"]:  # an earlier run, random subsets not of equal cost: not shown
        data.pop("fscd")
    if (common.RESULTS / PRE_PROTOCOL).is_file():
        data["pre"] = json.loads((common.RESULTS / PRE_PROTOCOL).read_text())
    lines = ["# The seed CTR models on MovieLens-100K with behaviours", "",
             "Generated by `benchmarks/ctr_zoo.py` (module docstring: the protocol, the claims and their rules). Commands and machines:", ""]
    lines += [f"- {p}{' (earlier run, before the protocol)' if p == 'pre' else ''}: `{'`, then `'.join(d.get('commands', [d['command']]))}` "
              f"on {common.machine_line(d['machine'])}" for p, d in data.items()] + [""]
    if "zoo" in data:
        lines += zoo_section(data["zoo"], data.get("pre"))
    if "apg" in data:
        lines += apg_section(data["apg"])
    if "fscd" in data:
        plot_fscd(data["fscd"])
        lines += fscd_section(data["fscd"])
    lines += common.claims_table(claims(data))
    common.write_page("ctr_zoo.md", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=PARTS + ("doc",))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(LAMBDAS), help="fscd: the complexity weights")
    parser.add_argument("--no_all_fields", action="store_true", help="fscd: skip the all-fields reference row")
    parser.add_argument("--only", nargs="*", help="zoo: only these rows")
    parser.add_argument("--resume", action="store_true", help="zoo / fscd: keep the runs already in its JSON")
    parser.add_argument("--data_dir", default=common.default_data_dir())
    args = parser.parse_args()
    if args.part != "doc":
        payload = {"part_zoo": part_zoo, "part_apg": part_apg, "part_fscd": part_fscd}[f"part_{args.part}"](args)
        payload.update(command=common.command(), machine=common.machine())
        common.write_json(f"ctr_zoo_{args.part}", payload)
    write_doc()


if __name__ == "__main__":
    main()
