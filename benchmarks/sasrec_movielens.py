"""SASRec (JAX) on MovieLens-100K next-item recommendation against popularity and RecBole's SASRec.

    python benchmarks/sasrec_movielens.py [--seeds 0 1 2] [--epochs 300] [--patience 10]
        [--batch_size 2048] [--recbole /path/to/recbole-env/bin/python] [--recbole_seeds 0]
        [--budget_note TEXT] [--smoke]
    python benchmarks/sasrec_movielens.py --add_recbole --recbole PYTHON --recbole_seeds 1 2 [same budget flags]

Task (`jaxrec.data.sequential`, RecBole's protocol): each user's 100K ratings in time order (ties
by item id), leave-one-out (last item test, second-to-last valid, every earlier prefix a train
example, histories of at most 50), full ranking over all 1,682 items, the user's history not
excluded; HR@{1,5,10}, NDCG@{5,10} with pessimistic ties (`jaxrec.train.metrics`).

SASRec (JAX): `configs/sasrec_movielens.py` (RecBole's SASRec defaults: 2 layers, 2 heads, hidden
64, inner 256, hidden and attention dropout 0.5, N(0, 0.02) init, Adam 1e-3, batch 2048, max length
50) through `common.fit`
(`train_and_evaluate`, early stopping on valid NDCG@10: the epoch is chosen on valid; test never
evaluated there), `--epochs` / `--patience` / `--batch_size` override the config where the CPU
budget needs it (the page states what ran). Test is read once per seed (`common.final_test`).

Popularity: every item scored by its count among the users' train interactions
(`item_train_count`); deterministic, test read once (`common.read_test`).

RecBole peer (`--recbole PYTHON`, a venv with `pip install recbole` (1.2.1), the torch CPU wheel and
`setuptools<81`, whose `pkg_resources` ray needs): RecBole's SASRec (its defaults, same epochs / patience / batch),
run in its own interpreter on atomic files written from the same u.data (`ml-100k-jaxrec.inter`: user_id,
item_id, rating, timestamp; rows sorted by user, timestamp, item id so that RecBole's stable time
sort breaks ties by item id as jaxrec does, `write_atomic`; not named ml-100k, for which RecBole
reads the copy bundled in its package, in u.data's row order, whatever `data_path` says), `eval_args = {split: {LS: valid_and_test}, order: TO, mode: full}`,
`valid_metric: NDCG@10`; its test figures (read once by RecBole at its best valid epoch) go through
`common.read_test` per seed.

Rule, stated before the run: SASRec (JAX) mean test NDCG@10 >= RecBole's mean - 2 x the larger of
the two seed standard deviations. Without RecBole, the claim is not testable here and the page
says why.

Writes benchmarks/results/sasrec_movielens.json and docs/results/sasrec_movielens.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from jaxrec.data.sequential import ITEM_COUNT, TARGET
from jaxrec.train import metrics as metrics_lib
from jaxrec.train.cli import load_config_file
from jaxrec.train.config import build_dataset

NAME = "sasrec_movielens"
SHOWN = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10")
RECBOLE_SCRIPT = r'''
import json, sys
import numpy as np
DATASET = "ml-100k-jaxrec"  # not "ml-100k": RecBole reads its bundled copy for that name, whatever data_path says
for name, alias in (("float", float), ("int", int), ("bool", bool), ("long", int), ("complex", complex),
                    ("bool8", np.bool_), ("float_", np.float64), ("unicode_", np.str_), ("complex_", np.complex128)):
    if not hasattr(np, name):
        setattr(np, name, alias)  # RecBole 1.2.1 uses aliases NumPy 2 removed (checked: it imports with these)
import functools
import torch
torch.load = functools.partial(torch.load, weights_only=False)  # torch >= 2.6 refuses RecBole's own checkpoint otherwise
from recbole.quick_start import run_recbole
args = json.loads(sys.argv[1])
result = run_recbole(model="SASRec", dataset=DATASET, config_dict=args)
print("RECBOLE_RESULT " + json.dumps({"valid": dict(result["best_valid_result"]), "test": dict(result["test_result"]),
                                      "best_valid_score": float(result["best_valid_score"])}))
'''


def config(args, seed: int):
    c = load_config_file(str(common.ROOT / "configs" / "sasrec_movielens.py"))
    c.dataset.data_dir = args.data_dir
    c.seed = seed
    c.train.num_epochs = args.epochs
    c.train.batch_size = args.batch_size
    c.early_stopping.patience = args.patience
    c.train.progress_bar = False
    if args.smoke:
        c.dataset.max_users = 100
        c.dataset.max_history = c.model.max_len = 10
    return c


def popularity(dataset, split: str) -> dict:
    counts = dataset.side[ITEM_COUNT].astype(np.float64)
    target = dataset.splits[split][TARGET]
    return metrics_lib.ranking_metrics(metrics_lib.target_rank(np.tile(counts, (len(target), 1)), target))


TIES = "item_id_own_file"  # how the atomic file orders a user's equal timestamps (RecBole keeps file order: a stable sort)


def write_atomic(data_dir: str, out: Path) -> Path:
    """RecBole's `ml-100k-jaxrec.inter` from u.data (every rating an interaction, as in jaxrec's split),
    its rows sorted by (user, timestamp, item id). RecBole orders a user's interactions by a stable
    sort on the timestamp, so equal timestamps keep file order: sorted here, they follow item id as
    in `jaxrec.data.sequential`, and both libraries see the same sequences and targets (u.data's own
    order differs from it at half the positions and at 281 of the 943 test targets)."""
    raw = np.loadtxt(Path(data_dir) / "u.data", dtype=np.int64)
    raw = raw[np.lexsort((raw[:, 1], raw[:, 3], raw[:, 0]))]
    folder = out / "ml-100k-jaxrec"  # RECBOLE_SCRIPT's DATASET
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in raw]
    (folder / "ml-100k-jaxrec.inter").write_text("\n".join(lines) + "\n")
    return out


def recbole_run(python: str, data_path: Path, args, seed: int) -> dict:
    cfg = {"data_path": str(data_path), "seed": seed, "use_gpu": False, "show_progress": False, "state": "WARNING",
           "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
           "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
           "train_neg_sample_args": None, "loss_type": "CE", "MAX_ITEM_LIST_LENGTH": 50,
           "metrics": ["Hit", "NDCG", "MRR"], "topk": [1, 5, 10], "valid_metric": "NDCG@10",
           "epochs": args.epochs, "stopping_step": args.patience, "train_batch_size": args.batch_size,
           "checkpoint_dir": str(data_path / "saved"), "log_wandb": False}
    t0 = time.time()
    p = subprocess.run([python, "-c", RECBOLE_SCRIPT, json.dumps(cfg)], capture_output=True, text=True, cwd=data_path,
                       env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    line = next((x for x in p.stdout.splitlines() if x.startswith("RECBOLE_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"RecBole failed (exit {p.returncode}): {(p.stderr or p.stdout)[-2000:]}")
    r = json.loads(line[len("RECBOLE_RESULT "):])
    conv = lambda m: {k.lower(): float(v) for k, v in m.items()} | {"hr@" + k.split("@")[1]: float(v)
                                                                  for k, v in m.items() if k.lower().startswith("hit@")}
    return {"valid": conv(r["valid"]), "test": conv(r["test"]), "seconds": time.time() - t0}


def fmt(values) -> str:
    m, s = common.mean_std(values)
    return f"{m:.4f} ± {s:.4f}"


def page(res: dict) -> list[str]:
    a = res["args"]
    lines = [
        "# SASRec on MovieLens-100K next-item recommendation", "",
        f"Generated by `{res['command']}` on {common.machine_line(res['machine'])}.", "",
        "Task: each user's 100K ratings in time order (ties by item id), leave-one-out (last item test, "
        "second-to-last valid, every earlier prefix a train example; histories of at most 50 items), full ranking "
        "over all 1,682 items, history items not excluded (RecBole's default for sequential models), ties counted "
        "pessimistically. 97,171 train / 943 valid / 943 test examples.", "",
        f"SASRec (JAX): `configs/sasrec_movielens.py` (RecBole's SASRec defaults: 2 layers, 2 heads, hidden 64, "
        f"inner 256, dropout 0.5, post-norm, Adam lr 1e-3) with batch {a['batch_size']}, at most {a['epochs']} epochs, "
        f"early stopping on valid NDCG@10 (patience {a['patience']}); seeds {a['seeds']}. The model follows RecBole's "
        "SASRec option by option, including N(0, 0.02) init of every embedding and Dense kernel and attention-probability "
        "dropout 0.5 (`jaxrec/models/seq/sasrec.py` lists them); what still differs is outside the model: RecBole's "
        "cross-entropy also covers the padding id's logit, and RecBole keeps each epoch's last partial batch "
        "(97,171 = 47 x 2048 + 915; jaxrec drops it).", "",
        *([f"Budget: {a['budget_note']}", ""] if a.get("budget_note") else []),
        "## Test metrics (mean ± std over seeds)", "",
        "| method | " + " | ".join(m.upper().replace("HR", "HR") for m in SHOWN) + " | valid NDCG@10 | epochs (best / run) |",
        "|---|" + "---|" * (len(SHOWN) + 2)]
    pop = res["popularity"]
    lines.append("| popularity | " + " | ".join(f"{pop['test'][m]:.4f}" for m in SHOWN) + f" | {pop['valid']['ndcg@10']:.4f} | - |")
    runs = res["sasrec"]
    lines.append("| SASRec (JAX) | " + " | ".join(fmt([r["test"][m] for r in runs]) for m in SHOWN) +
                 f" | {fmt([r['valid']['ndcg@10'] for r in runs])} | " +
                 ", ".join(f"{r['best_epoch'] + 1} / {r['epochs_run']}" for r in runs) + " |")
    rb = res.get("recbole") or []
    if rb:
        times = ", ".join(f"{r['seconds']:.0f} s" for r in rb if "seconds" in r)
        lines.append("| SASRec (RecBole) | " + " | ".join(fmt([r["test"].get(m, float('nan')) for r in rb]) for m in SHOWN) +
                     f" | {fmt([r['valid']['ndcg@10'] for r in rb])} | seeds {[r.get('seed') for r in rb]}, "
                     f"{times} |")
    lines += ["", f"SASRec (JAX) trains at {np.median([r['train_examples_per_sec'] for r in runs]):,.0f} examples/s "
              f"(median over seeds) on this machine; wall time per seed " +
              ", ".join(f"{r['seconds']:.0f} s" for r in runs) + " (training, validation and compilation).", ""]
    lines += ["## RecBole", "", res["recbole_note"], ""]
    return lines + common.claims_table(res["claims"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(common.SEEDS))
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=2048)
    p.add_argument("--recbole", default="", help="python of a venv with recbole installed (empty: not run)")
    p.add_argument("--recbole_seeds", type=int, nargs="+", default=None, help="RecBole's seeds (default: --seeds)")
    p.add_argument("--recbole_note", default="", help="what the page says when RecBole did not run")
    p.add_argument("--budget_note", default="", help="what the page says about the epoch budget when it is not the full 300")
    p.add_argument("--data_dir", default=common.default_data_dir())
    p.add_argument("--smoke", action="store_true", help="100 users, histories of 10: a quick check of the script")
    p.add_argument("--add_recbole", action="store_true",
                   help="run RecBole for the --recbole_seeds the results JSON lacks (same budget) and rewrite JSON and page")
    p.add_argument("--page_only", action="store_true", help="rewrite the page from the JSON (with --recbole_note if given)")
    args = p.parse_args()
    if args.add_recbole:
        return add_recbole(args)
    if args.page_only:
        res = json.loads((common.RESULTS / f"{NAME}.json").read_text())
        res["recbole_note"] = args.recbole_note or res["recbole_note"]
        res["args"]["budget_note"] = args.budget_note or res["args"].get("budget_note", "")
        common.write_page(NAME + ".md", page_lines(res))
        (common.RESULTS / f"{NAME}.json").write_text(json.dumps(res, indent=2))  # its test-read ledger kept as written
        return
    dataset = build_dataset(config(args, 0))
    print(dataset.summary(), flush=True)
    pop = {"valid": popularity(dataset, "valid")}
    pop["test"] = common.read_test("popularity", lambda: popularity(dataset, "test"))
    print("popularity", pop, flush=True)
    runs = []
    for seed in args.seeds:
        t0 = time.time()
        run = common.fit(config(args, seed), dataset=dataset)
        seconds = time.time() - t0
        test = common.final_test(f"sasrec_jax/seed{seed}", run, dataset=dataset)
        runs.append({"seed": seed, "valid": run["valid"], "test": test, "best_epoch": run["best_epoch"],
                     "epochs_run": run["epochs_run"], "train_examples_per_sec": run["train_examples_per_sec"],
                     "seconds": seconds})
        print(f"seed {seed}: valid ndcg@10 {run['valid']['ndcg@10']:.4f}, test {test}, {seconds:.0f} s", flush=True)
    recbole, note = [], args.recbole_note or "RecBole was not run (no `--recbole`)."
    if args.recbole:
        with tempfile.TemporaryDirectory() as tmp:
            data_path = write_atomic(args.data_dir, Path(tmp))
            for seed in (args.seeds if args.recbole_seeds is None else args.recbole_seeds):
                r = {}
                r["test"] = common.read_test(f"sasrec_recbole_ties_{TIES}/seed{seed}",
                                             lambda: (r.update(recbole_run(args.recbole, data_path, args, seed)) or r["test"]))
                r["seed"], r["ties"] = seed, TIES
                recbole.append(r)
                print(f"recbole seed {seed}: {r}", flush=True)
        note = (f"RecBole's SASRec ran here ({args.recbole}) on `ml-100k-jaxrec.inter` written from the same u.data, "
                f"same epochs / patience / batch; the file's rows are sorted by (user, timestamp, item id), so RecBole's "
                f"stable time sort orders equal timestamps by item id as jaxrec does: the same sequences and targets.")
    ours = [r["test"]["ndcg@10"] for r in runs]
    res = {"command": common.command(), "machine": common.machine(), "args": vars(args), "dataset": dataset.summary(),
           "popularity": pop, "sasrec": runs, "recbole": recbole, "recbole_note": note,
           "claims": [recbole_claim(ours, recbole), popularity_claim(ours, pop)]}
    common.write_json(NAME + ("_smoke" if args.smoke else ""), res)
    common.write_page(NAME + ("_smoke" if args.smoke else "") + ".md", page_lines(res))


def recbole_claim(ours: list[float], recbole: list[dict]) -> dict:
    """The claims row of issue 22 (rule in the module docstring)."""
    rule = "mean test NDCG@10 >= RecBole's mean - 2 x the larger seed std (stated before the run)"
    claim = {"claim": "SASRec (JAX) within noise of or above RecBole's SASRec (issue 22)", "seeds": str(len(ours)), "rule": rule}
    if not recbole:
        return claim | {"figure": f"{fmt(ours)}; RecBole not run (see above)", "verdict": "not testable here"}
    theirs = [r["test"]["ndcg@10"] for r in recbole]
    bound = common.mean_std(theirs)[0] - 2 * max(common.mean_std(ours)[1], common.mean_std(theirs)[1])
    return claim | {"figure": f"{fmt(ours)} vs RecBole {fmt(theirs)} (bound {bound:.4f})",
                    "seeds": f"{len(ours)} / RecBole {len(theirs)}",
                    "verdict": "holds" if common.mean_std(ours)[0] >= bound else "does not hold"}


def add_recbole(args) -> None:
    """`--add_recbole`: runs RecBole for the `--recbole_seeds` the results JSON lacks, at the JSON's
    budget (epochs, patience, batch), appends them, and rewrites the claims, JSON and page."""
    path = common.RESULTS / f"{NAME}.json"
    res = json.loads(path.read_text())
    ran = res["args"]
    for key in ("epochs", "patience", "batch_size", "smoke"):
        if ran[key] != getattr(args, key):
            raise SystemExit(f"--add_recbole: --{key}={getattr(args, key)} differs from the JSON's run ({ran[key]})")
    # runs on an atomic file with another tie order are kept aside, not compared
    res.setdefault("recbole_superseded", []).extend(r for r in res["recbole"] if r.get("ties") != TIES)
    res["recbole"] = [r for r in res["recbole"] if r.get("ties") == TIES]
    have = {r.get("seed") for r in res["recbole"]}
    res["command"] += f"`, then `{common.command()}"
    res["args"]["budget_note"] = args.budget_note or ran.get("budget_note", "")
    ledger = res.get("test_reads", [])
    with tempfile.TemporaryDirectory() as tmp:
        data_path = write_atomic(args.data_dir, Path(tmp))
        for seed in [s for s in (args.recbole_seeds or args.seeds) if s not in have]:
            r = {}
            r["test"] = common.read_test(f"sasrec_recbole_ties_{TIES}/seed{seed}",
                                         lambda: (r.update(recbole_run(args.recbole, data_path, args, seed)) or r["test"]))
            r["seed"], r["ties"] = seed, TIES
            res["recbole"].append(r)
            print(f"recbole seed {seed}: {r}", flush=True)
            res["args"]["recbole_seeds"] = [r["seed"] for r in res["recbole"]]
            res["claims"] = [recbole_claim([r["test"]["ndcg@10"] for r in res["sasrec"]], res["recbole"]),
                             popularity_claim([r["test"]["ndcg@10"] for r in res["sasrec"]], res["popularity"])]
            res["test_reads"] = ledger + common.test_reads()
            path.write_text(json.dumps(res, indent=2))  # after every seed: a late stop keeps the seeds done
            common.write_page(NAME + ".md", page_lines(res))


def popularity_claim(ours: list[float], pop: dict) -> dict:
    """The claims row 'SASRec above popularity' (rule: every seed's test NDCG@10 above popularity's)."""
    return {"claim": "SASRec (JAX) above popularity", "figure": f"{fmt(ours)} vs {pop['test']['ndcg@10']:.4f}",
            "seeds": str(len(ours)), "rule": "every seed's test NDCG@10 above popularity's",
            "verdict": "holds" if all(x > pop["test"]["ndcg@10"] for x in ours) else "does not hold"}


def page_lines(res: dict) -> list[str]:
    if "claims" not in res:  # a JSON written before the claims list
        res["claims"] = [res["claim"], popularity_claim([r["test"]["ndcg@10"] for r in res["sasrec"]], res["popularity"])]
    lines = page(res)
    return lines[:lines.index("## Claims")] + common.claims_table(res["claims"])


if __name__ == "__main__":
    main()
