"""Multi-task experiments: GradOPS against linear scalarization, PCGrad, MGDA and CAGrad.

    python benchmarks/multitask_experiments.py synthetic [--seeds 0 1 2 3 4]   # correlations -0.5, 0, 0.5, 0.9
    python benchmarks/multitask_experiments.py movielens [--seeds 0 1 2 3 4]   # like / love / rating
    python benchmarks/multitask_experiments.py doc                         # rewrite docs/results/multitask.md

Every method trains the same shared-bottom model (`jaxrec.models.multitask.SharedBottom`) with
the same Adam learning rate, batch and epochs (`jaxrec.train.multitask.train`); single-task
baselines are the same model with one tower, trained on one task. Per task the test metric is
MSE (regression) or AUC (binary), and

    delta_m% = 100 / T * sum_t s_t (M_t - M_t^single) / M_t^single,   s_t = +1 (AUC), -1 (MSE)

(positive: better than single-task on average). GradOPS runs at alpha in {-3, -1, 0, 1, 3}; the
alpha with the best mean *validation* delta_m% over the seeds of a setting is its final
configuration. Test is read (`common.read_test`) once per final configuration and seed: the
single-task models, the four baselines, GradOPS at the chosen alpha and one fixed variant that
keeps tasks conflicting with no other unprojected (`only_if_conflict`, alpha = 0). Claims:
GradOPS against each baseline, test delta_m% paired by seed, rule 'every_seed' (5 seeds: the
seed std of delta_m% is several times the differences). Results go to
`benchmarks/results/multitask_<part>.json`; every part rewrites the page and its plots.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from tqdm import tqdm

import common
from jaxrec.data.movielens import MULTITASK_LABELS, load_movielens_100k
from jaxrec.data.multitask import load_synthetic_multitask
from jaxrec.models.multitask import SharedBottom
from jaxrec.optim import multitask as mt
from jaxrec.train import multitask as tm

PARTS = ("synthetic", "movielens")
CORRELATIONS = (-0.5, 0.0, 0.5, 0.9)
ALPHAS = (-3.0, -1.0, 0.0, 1.0, 3.0)
METHODS = {"equal weights": mt.linear(), "PCGrad": mt.pcgrad(), "MGDA": mt.mgda(), "CAGrad": mt.cagrad(c=0.5),
           **{f"GradOPS a={a:g}": mt.gradops(alpha=a) for a in ALPHAS},
           "GradOPS a=0 only-if-conflict": mt.gradops(alpha=0.0, only_if_conflict=True)}
SWEEP = tuple(f"GradOPS a={a:g}" for a in ALPHAS)  # GradOPS's alpha, chosen on valid
BASELINES = ("equal weights", "PCGrad", "MGDA", "CAGrad")  # the paper's comparisons


def metric(m: dict) -> tuple[float, int]:
    """(value, sign): AUC higher is better, MSE lower."""
    return (m["auc"], 1) if "auc" in m else (m["mse"], -1)


def delta_m(multi: list[dict], single: list[dict]) -> float:
    return 100.0 / len(multi) * sum(s * (v - b) / b for (v, s), (b, _) in zip(map(metric, multi), map(metric, single)))


def evaluate(model, variables, dataset, split: str, kinds: list[str], tasks: list[int]) -> dict:
    """`tm.evaluate`'s per-task metrics as {'tasks': [...], 'task<t>_<metric>': value, ...}."""
    per_task = tm.evaluate(model, variables, dataset, split, kinds, tasks)
    return {"tasks": per_task, **{f"task{t}_{k}": x for t, m in zip(tasks, per_task) for k, x in m.items()}}


def run_setting(label: str, datasets: dict, kinds: list[str], args, embed_dim: int, bar) -> list[dict]:
    """Every method on each seed's dataset ({seed: Dataset}), chosen on valid, then test read once.

    Phase 1 trains the single-task models and every method per seed and keeps valid figures
    only. Phase 2 picks GradOPS's alpha by mean valid delta_m% over the seeds. Phase 3 reads test
    (`common.read_test`) for the final configurations alone: the single-task models, the baselines,
    GradOPS at the chosen alpha and the only-if-conflict variant; the other alphas never see test."""
    trained = []  # (run dict, evaluate-on-test thunk)
    for seed, dataset in datasets.items():
        singles, single_valid = [], []
        for t, kind in enumerate(kinds):
            model = SharedBottom(dataset.features, num_tasks=1, embed_dim=embed_dim)
            v, hist = tm.train(model, dataset, [kind], mt.linear(), tasks=[t], lr=args.lr, epochs=args.epochs, seed=seed)
            singles.append((model, v, kind, t))
            single_valid += hist[-1]["valid"]
            bar.update()
        model = SharedBottom(dataset.features, num_tasks=len(kinds), embed_dim=embed_dim)
        for name, combiner in METHODS.items():
            tic = time.perf_counter()
            v, hist = tm.train(model, dataset, kinds, combiner, lr=args.lr, epochs=args.epochs, seed=seed)
            run = {"seed": seed, "method": name, "valid": hist[-1]["valid"], "single_valid": single_valid,
                   "valid_delta_m": delta_m(hist[-1]["valid"], single_valid), "seconds": time.perf_counter() - tic}
            trained.append((run, dataset, model, v, singles))
            bar.update()
            bar.set_postfix_str(f"seed {seed} {name}: valid delta_m {run['valid_delta_m']:+.2f}%")
    by_alpha = {n: [{"valid": {"delta_m": r["valid_delta_m"]}} for r, *_ in trained if r["method"] == n] for n in SWEEP}
    best, _ = common.choose(by_alpha, metric="delta_m")
    single_test = {}
    for run, dataset, model, v, singles in trained:
        if run["method"] in SWEEP and run["method"] != best:
            continue
        seed = run["seed"]
        if seed not in single_test:
            single_test[seed] = [m for model1, v1, kind, t in singles for m in common.read_test(
                f"{label} seed {seed} single-task {t}",
                lambda: evaluate(model1, v1, dataset, "test", [kind], [t]))["tasks"]]
        run["test"] = common.read_test(f"{label} seed {seed} {run['method']}",
                                       lambda: evaluate(model, v, dataset, "test", kinds, list(range(len(kinds)))))["tasks"]
        run["single_test"] = single_test[seed]
        run["delta_m"] = delta_m(run["test"], run["single_test"])
    return [run for run, *_ in trained]


def part_synthetic(args, save) -> dict:
    """Every correlation in `--correlations`; `save(partial payload)` after each one, so an
    interrupted run keeps the settings it finished."""
    out = []
    with tqdm(total=len(args.correlations) * len(args.seeds) * (2 + len(METHODS)), desc="synthetic") as bar:
        for p in args.correlations:
            datasets = {seed: load_synthetic_multitask(rows=args.rows, correlation=p, seed=seed) for seed in args.seeds}
            out += [{"correlation": p, **r} for r in run_setting(f"synthetic p={p:g}", datasets, ["regression", "regression"], args, 4, bar)]
            save({"rows": args.rows, "tasks": ["task 1 (MSE)", "task 2 (MSE)"], "runs": out})
    return {"rows": args.rows, "tasks": ["task 1 (MSE)", "task 2 (MSE)"], "runs": out}


def part_movielens(args, save=None) -> dict:
    ds = load_movielens_100k(args.data_dir, labels="multitask")
    kinds = ["binary", "binary", "regression"]
    with tqdm(total=len(args.seeds) * (3 + len(METHODS)), desc="movielens") as bar:
        runs = run_setting("movielens", {seed: ds for seed in args.seeds}, kinds, args, 8, bar)
    return {"tasks": [f"{n} ({'AUC' if k == 'binary' else 'MSE'})" for n, k in zip(MULTITASK_LABELS, kinds)], "runs": runs}


def summarise(runs: list[dict]) -> dict:
    """method -> valid delta_m mean, and for the methods whose test was read (the final
    configurations) test delta_m mean / std, per-seed delta_m and per-task test metric means."""
    out = {}
    for name in dict.fromkeys(r["method"] for r in runs):  # the methods this run had, in order
        rs = [r for r in runs if r["method"] == name]
        out[name] = {"valid_delta_m": float(np.mean([r["valid_delta_m"] for r in rs]))}
        if "test" in rs[0]:
            out[name].update(delta_m=float(np.mean([r["delta_m"] for r in rs])), delta_m_std=float(np.std([r["delta_m"] for r in rs], ddof=1)) if len(rs) > 1 else 0.0,
                             per_seed={r["seed"]: r["delta_m"] for r in rs},
                             metrics=np.mean([[metric(m)[0] for m in r["test"]] for r in rs], axis=0).tolist())
    best = max((n for n in SWEEP if n in out), key=lambda n: out[n]["valid_delta_m"])  # as `run_setting` chose it
    single = np.mean([[metric(m)[0] for m in r["single_test"]] for r in runs if "single_test" in r], axis=0).tolist()
    return {"methods": out, "single": single, "gradops_best": best}


def table(s: dict, tasks: list[str]) -> list[str]:
    lines = ["| method | " + " | ".join(tasks) + " | delta_m% (test) | delta_m% (valid) |", "|---" * (len(tasks) + 3) + "|",
             "| single-task | " + " | ".join(f"{v:.4f}" for v in s["single"]) + " | 0 | 0 |"]
    for name, m in s["methods"].items():
        if "delta_m" not in m:
            lines.append(f"| {name} | " + " | ".join("(not read)" for _ in tasks) + f" | (not read) | {m['valid_delta_m']:+.2f} |")
            continue
        mark = " (alpha chosen on valid)" if name == s["gradops_best"] else ""
        lines.append(f"| {name}{mark} | " + " | ".join(f"{v:.4f}" for v in m["metrics"])
                     + f" | {m['delta_m']:+.2f} ± {m['delta_m_std']:.2f} | {m['valid_delta_m']:+.2f} |")
    return lines


def claims(setting: str, s: dict) -> list[dict]:
    """GradOPS (alpha chosen on valid) against each baseline the paper compares with: test
    delta_m%, paired by seed, rule every_seed."""
    g = s["methods"][s["gradops_best"]]["per_seed"]
    rows = []
    for b in BASELINES:
        ref = s["methods"][b]["per_seed"]
        v = common.verdict([g[k] for k in ref], [ref[k] for k in ref], "every_seed")
        rows.append(common.claim_row(f"{setting}: GradOPS ({s['gradops_best'][len('GradOPS '):]}, chosen on valid) beats {b} on delta_m%",
                                     common.fmt_diffs(v, 2) + " points", v))
    return rows


def write_doc() -> None:
    plt = common.pyplot()

    data = {p: json.loads(f.read_text()) for p in PARTS if (f := common.RESULTS / f"multitask_{p}.json").exists()}
    lines = ["# Multi-task learning: GradOPS and its baselines", "",
             "GradOPS (`jaxrec.optim.multitask.gradops`, WSDM 2025) against equal-weight linear scalarization, PCGrad,",
             "MGDA and CAGrad (c = 0.5), all through `multitask_transform` + Adam on the same shared-bottom model",
             "(`jaxrec.train.multitask`). delta_m% is the mean relative change of the per-task test metric against",
             "single-task models (positive = better). GradOPS's alpha is chosen per setting on validation delta_m%",
             "(mean over seeds); test is read only for the final configurations (the other alphas show '(not read)').",
             "Generated by `benchmarks/multitask_experiments.py`.", ""]
    rows, fronts = [], []
    if "synthetic" in data:
        d = data["synthetic"]
        summaries = {p: summarise([r for r in d["runs"] if r["correlation"] == p]) for p in CORRELATIONS
                     if any(r["correlation"] == p for r in d["runs"])}
        stds = [m["delta_m_std"] for s in summaries.values() for m in s["methods"].values() if "delta_m_std" in m]
        lines += ["## Synthetic tasks (MMoE construction)", "", f"`{d['command']}`  ", f"Machine: {common.machine_line(d['machine'])}.", "",
                  f"{d['rows']:,} rows, 100 features, two regression tasks whose weight vectors have cosine p; shared",
                  "bottom 128-64, towers 32, embedding dim 4 per numeric feature; Adam, batch 256; mean ± std over seeds",
                  f"{sorted({r['seed'] for r in d['runs']})} (each seed draws its own tasks). The std of test delta_m% over seeds is "
                  f"{min(stds):.0f}-{max(stds):.0f} points here, so only paired per-seed comparisons say anything.", ""]
        for p, s in summaries.items():
            lines += [f"### p = {p:g}", ""] + table(s, d["tasks"]) + [""]
            rows += claims(f"synthetic p = {p:g}", s)
            fronts.append((f"synthetic p = {p:g}", s, d["tasks"][:2], (0, 1)))
    if "movielens" in data:
        d = data["movielens"]
        s = summarise(d["runs"])
        lines += ["## MovieLens-100K multi-task", "", f"`{d['command']}`  ", f"Machine: {common.machine_line(d['machine'])}.", "",
                  "The default MovieLens split and features; tasks: rating >= 4 (AUC), rating = 5 (AUC), the rating (MSE);",
                  f"shared bottom 128-64 over 8-dim embeddings, towers 32; seeds {sorted({r['seed'] for r in d['runs']})}.", ""] + table(s, d["tasks"]) + [""]
        rows += claims("MovieLens", s)
        fronts.append(("MovieLens", s, [d["tasks"][0], d["tasks"][2]], (0, 2)))
    if fronts:
        fig, axes = plt.subplots(1, len(fronts), figsize=(4.2 * len(fronts), 3.8), squeeze=False)
        for ax, (title, s, names, (i, j)) in zip(axes[0], fronts):
            for name, m in s["methods"].items():
                if "metrics" not in m:
                    continue  # an alpha not chosen on valid: its test was never read
                gradops = name.startswith("GradOPS")
                ax.scatter(m["metrics"][i], m["metrics"][j], marker="o" if gradops else "s", color="C0" if gradops else "C1")
                ax.annotate(name.replace("GradOPS ", ""), (m["metrics"][i], m["metrics"][j]), fontsize=7)
            ax.scatter(*[s["single"][k] for k in (i, j)], marker="*", color="k", s=80)
            ax.set_xlabel(names[0])
            ax.set_ylabel(names[1])
            ax.set_title(title, fontsize=9)
        fig.suptitle("per-task test metrics: GradOPS (circles), baselines (squares), single-task (star)", fontsize=9)
        fig.tight_layout()
        fig.savefig(common.DOCS / "multitask_fronts.png", dpi=110)
        plt.close(fig)
        lines += ["![trade-off fronts](multitask_fronts.png)", ""]
    if rows:
        lines += common.claims_table(rows)
    common.write_page("multitask.md", lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=PARTS + ("doc",))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--data_dir", default=common.default_data_dir())
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--correlations", type=float, nargs="+", default=list(CORRELATIONS), help="synthetic: task correlations p")
    args = p.parse_args()
    if args.part != "doc":
        head = {"benchmark": f"multitask_{args.part}", "command": common.command(), "machine": common.machine(),
                "epochs": args.epochs, "lr": args.lr}

        def save(part: dict) -> None:
            print(f"wrote {common.write_json(f'multitask_{args.part}', {**head, **part})}")

        save({"synthetic": part_synthetic, "movielens": part_movielens}[args.part](args, save))
    write_doc()


if __name__ == "__main__":
    main()
