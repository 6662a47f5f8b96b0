"""Shared helpers of the benchmark scripts: the experimental protocol, machine description, JSON
and page writing.

The protocol (docs/results/README.md says it for readers; every script follows it):

1. Every choice -- hyper-parameters, variants, alpha, lambda, settings, epochs -- is made on the
   validation split. Training runs go through `fit`, which never evaluates test
   (`eval_splits=('valid',)`); `choose` picks a candidate by its mean valid metric over seeds.
2. Test is read once per final configuration, and only by `read_test` (`final_test` for runs of
   `fit`): it refuses a second read of the same label in a process and keeps a ledger
   (`test_reads()`), which every results JSON carries, so a reviewer can check what was read.
3. >= 3 seeds (`SEEDS`); 5 where the effect is under 2x the seed std (`seeds_needed`).
4. A claim's verdict rule is stated before the run, and the same rules serve every claim
   (`RULES`, `verdict`): 'every_seed' (every paired seed difference on the claimed side) or
   'paired_t' (one-sided paired t-test, p < 0.05).
5. The baseline is the one the paper names.
6. Each page ends with a claims table (`claims_table`): paper claim, our figure, seeds, rule,
   verdict.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "results"
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "ml-100k"


def default_data_dir() -> str:
    """`$JAXREC_DATA_DIR/ml-100k`, else the repository's sibling `shared/data/ml-100k`."""
    if "JAXREC_DATA_DIR" in os.environ:
        return str(Path(os.environ["JAXREC_DATA_DIR"]) / "ml-100k")
    return str(DEFAULT_DATA_DIR)


def machine() -> dict:
    """What the numbers were measured on."""
    import jax

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "git_commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def command() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])


def mean_std(xs) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    import numpy as np

    xs = np.asarray(xs, float)
    return float(xs.mean()), float(xs.std(ddof=1)) if len(xs) > 1 else 0.0


def timed(f) -> float:
    """Seconds one call of `f()` takes, its (JAX) result ready."""
    import time

    import jax

    tic = time.perf_counter()
    jax.block_until_ready(f())
    return time.perf_counter() - tic


def write_json(name: str, payload: dict) -> Path:
    """`benchmarks/results/<name>.json`, with this process's test-read ledger (`test_reads`) added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "test_reads": test_reads()}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def machine_line(m: dict) -> str:
    return (f"{m['cpu']}, {m['cores']} cores, backend {m['backend']}, jax {m['jax']}, "
            f"XLA_FLAGS=`{m['xla_flags'] or '(none)'}`, commit {m['git_commit']}, {m['date']}")


def train_summary(config, dataset=None, workdir=None) -> dict:
    """`train_and_evaluate` on train with early stopping on valid -- never reading test
    (`eval_splits=('valid',)`; test goes through `final_test`) -- in a temporary workdir (unless
    given, then kept); the figures the result pages use: valid metrics, best epoch, parameters,
    train examples/s (median over epochs after the first; a one-epoch run has only its first,
    compilation included), and the method reports (`amtl`, `model_report`)."""
    import shutil
    import tempfile

    from jaxrec.train.loop import train_and_evaluate

    config = config.copy_and_resolve_references()
    config.eval_splits = ("valid",)
    tmp = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="jaxrec_run_"))
    try:
        r = train_and_evaluate(config, workdir, dataset=dataset)
    finally:
        if tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    return {"valid": r["valid"], "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
            "num_params": r["num_params"], "amtl": r.get("amtl"), "model_report": r.get("model_report"),
            "train_examples_per_sec": r["train_examples_per_sec"] or r["history"][0]["train_examples_per_sec"]}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (pages are written on headless machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_page(name: str, lines: list[str]) -> Path:
    """Writes `docs/results/<name>` and says so."""
    path = DOCS / name
    path.write_text("\n".join(lines))
    print(f"wrote {path}")
    return path


# ---- the protocol ------------------------------------------------------------------------------

SEEDS = (0, 1, 2)
RULES = {
    "every_seed": "every seed's paired difference is on the claimed side",
    "paired_t": "one-sided paired t-test over seeds (or repeats), p < 0.05",
    "every_repeat": "every repeat's ratio, measured in the same run, is on the claimed side",
    "mean": "the mean over seeds of the paired difference is on the claimed side",
}
_TEST_READS: list[dict] = []
_RUNS_DIR: list[Path] = []


def _runs_dir() -> Path:
    import atexit
    import shutil
    import tempfile

    if not _RUNS_DIR:
        d = Path(tempfile.mkdtemp(prefix="jaxrec_bench_"))
        atexit.register(shutil.rmtree, d, ignore_errors=True)
        _RUNS_DIR.append(d)
    return _RUNS_DIR[0]


def seeds_needed(effect: float, seed_std: float) -> int:
    """3 seeds, or 5 where |effect| is under 2x the seed std (protocol rule 3)."""
    return 5 if abs(effect) < 2 * seed_std else 3


def fit(config, dataset=None) -> dict:
    """`train_and_evaluate` on train with early stopping on valid, never reading test.

    Returns `train_summary`'s dict plus 'workdir' (kept until `final_test` or
    `discard`, else removed at exit) and 'config' (the config it ran)."""
    import tempfile

    config = config.copy_and_resolve_references()
    config.eval_splits = ("valid",)
    workdir = Path(tempfile.mkdtemp(prefix="run_", dir=_runs_dir()))
    r = train_summary(config, dataset=dataset, workdir=workdir)
    return {**r, "workdir": str(workdir), "config": config}


def discard(run: dict) -> None:
    """Removes a `fit` run's workdir (a candidate that was not chosen)."""
    import shutil

    shutil.rmtree(run.get("workdir", ""), ignore_errors=True)


def read_test(label: str, evaluate) -> dict:
    """THE one place a benchmark reads the test split: `evaluate()` (a thunk returning the test
    metrics of a final configuration) runs once per `label`; a second read of the same label
    raises. The ledger is `test_reads()`."""
    if any(x["label"] == label for x in _TEST_READS):
        raise RuntimeError(f"test split already read for {label!r}: test is read once per final configuration")
    metrics = evaluate()
    _TEST_READS.append({"label": label, "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}})
    return metrics


def final_test(label: str, run: dict, dataset=None) -> dict:
    """The test metrics of a `fit` run's best-valid-epoch checkpoint (through `read_test`); the
    run's workdir is removed afterwards. `label` names the final configuration and seed."""
    from jaxrec.train.experiment import evaluate_checkpoint

    def evaluate() -> dict:
        m = evaluate_checkpoint(run["workdir"], "test", "best", config=run["config"], dataset=dataset)
        return {k: v for k, v in m.items() if k not in ("split", "checkpoint", "epoch")}

    try:
        return read_test(label, evaluate)
    finally:
        discard(run)


def test_reads() -> list[dict]:
    """The ledger of every test read in this process (label and metrics), for the results JSON."""
    return list(_TEST_READS)


def choose(candidates: dict, metric: str = "auc", mode: str = "max") -> tuple:
    """The candidate whose runs have the best mean valid `metric` (protocol rule 1).

    candidates: {key: [fit run, ...]} (one run per seed). Returns (key, {key: mean valid metric})."""
    import numpy as np

    means = {k: float(np.mean([r["valid"][metric] for r in runs])) for k, runs in candidates.items()}
    pick = (max if mode == "max" else min)(means, key=means.get)
    print(f"chosen on valid {metric}: {pick} ({means[pick]:.4f}) among " +
          ", ".join(f"{k}: {v:.4f}" for k, v in means.items()), flush=True)
    return pick, means


def verdict(ours, reference, rule: str, side: str = "greater", margin: float = 0.0) -> dict:
    """Applies a stated rule to paired per-seed figures (protocol rule 4).

    ours, reference: [n] figures paired by seed (or repeat). side 'greater': the claim is
    ours > reference + margin; 'less': ours < reference - margin; 'within': |ours - reference|
    <= margin (only under 'every_seed'/'every_repeat'). Returns {'holds', 'diffs', 'mean', 'p', 'rule', 'n'}."""
    import numpy as np

    if rule not in RULES:
        raise ValueError(f"rule {rule!r}: expected one of {sorted(RULES)}")
    d = np.asarray(ours, float) - np.asarray(reference, float)
    p = None
    if side == "within":
        if rule == "paired_t":
            raise ValueError("side='within' needs rule 'every_seed' or 'every_repeat'")
        holds = bool(np.all(np.abs(d) <= margin))
    elif rule == "mean":
        holds = bool(d.mean() >= margin) if side == "greater" else bool(d.mean() <= -margin)
    elif rule == "paired_t":
        from scipy import stats

        shifted = d - margin if side == "greater" else -(d + margin)
        p = float(stats.ttest_1samp(shifted, 0.0, alternative="greater").pvalue) if len(d) > 1 else 1.0
        holds = p < 0.05
    else:
        holds = bool(np.all(d > margin)) if side == "greater" else bool(np.all(d < -margin))
    return {"holds": holds, "diffs": [float(x) for x in d], "mean": float(d.mean()), "p": p, "rule": rule, "n": len(d)}


def claim_row(claim: str, figure: str, v: dict | None, reproduced: str = "reproduced",
              not_reproduced: str = "not reproduced") -> dict:
    """One claims-table row from a `verdict` (None: not testable here, `figure` says why)."""
    if v is None:
        return {"claim": claim, "figure": figure, "seeds": "-", "rule": "-", "verdict": "not testable here"}
    rule = RULES[v["rule"]] + (f" (p = {v['p']:.3g})" if v.get("p") is not None else "")
    return {"claim": claim, "figure": figure, "seeds": str(v["n"]), "rule": rule,
            "verdict": reproduced if v["holds"] else not_reproduced}


def claims_table(rows: list[dict]) -> list[str]:
    """The page's closing claims table (protocol rule 6): paper claim, our figure, seeds, rule, verdict."""
    lines = ["## Claims", "", "Rules are fixed before the runs (docs/results/README.md); test is read once per final configuration.", "",
             "| claim | our figure | seeds / repeats | rule | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {r['claim']} | {r['figure']} | {r['seeds']} | {r['rule']} | **{r['verdict']}** |" for r in rows]
    return lines + [""]


def fmt_diffs(v: dict, digits: int = 4) -> str:
    """'+0.0012 (per seed +0.0010, +0.0015, +0.0011)' from a `verdict`."""
    return f"{v['mean']:+.{digits}f} (per seed {', '.join(f'{x:+.{digits}f}' for x in v['diffs'])})"
