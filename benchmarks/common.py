"""Shared helpers of the benchmark scripts: machine description, JSON and page writing."""

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


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def machine_line(m: dict) -> str:
    return (f"{m['cpu']}, {m['cores']} cores, backend {m['backend']}, jax {m['jax']}, "
            f"XLA_FLAGS=`{m['xla_flags'] or '(none)'}`, commit {m['git_commit']}, {m['date']}")


def train_summary(config, dataset=None, workdir=None) -> dict:
    """`train_and_evaluate` in a temporary workdir (unless given, then kept); the figures the
    result pages use: metrics per split, best epoch, parameters, train examples/s (median over
    epochs after the first; a one-epoch run has only its first, compilation included), and the
    method reports (`amtl`)."""
    import shutil
    import tempfile

    from jaxrec.train.loop import train_and_evaluate

    tmp = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="jaxrec_run_"))
    try:
        r = train_and_evaluate(config, workdir, dataset=dataset)
    finally:
        if tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    return {"test": r["test"], "valid": r["valid"], "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
            "num_params": r["num_params"], "amtl": r.get("amtl"),
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
