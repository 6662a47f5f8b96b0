"""Peak memory of `load_tabular` on a 1M-row CSV with and without one huge categorical value.

Issue 18, item 6: categorical strings used to be copied into a fixed-width numpy unicode
array (rows x longest value x 4 bytes), so one 10 MB id in a 1M-row file asked for 40 TB.
Now values stay Python / pyarrow strings and the reader's memory is bounded by the data.

Three loads of the same file shape, each in a fresh subprocess (peak RSS = its
`resource.getrusage(RUSAGE_SELF).ru_maxrss`, imports included):

* `plain`: no long value (the reference);
* `long_default_limit`: one value of `--value-mb` MB in the categorical column, default
  `max_value_bytes` (64 KiB): the load must fail with a DataError naming file:line, column
  and length;
* `long_accepted`: the same file with `max_value_bytes=None`: the value is accepted.

Acceptance: both long-value peaks < 2x the plain peak.

    python benchmarks/reader_memory.py                       # 1M rows, 10 MB value
    python benchmarks/reader_memory.py --rows 50000 --value-mb 2 --out /tmp/r.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FEATURES = [
    {"type": "categorical", "name": "cat"},
    {"type": "categorical", "name": "user", "encoding": "hash", "hash_buckets": 100_000},
    {"type": "sequence", "name": "tags", "max_len": 4},
    {"type": "numeric", "name": "price", "transform": "log1p"},
]

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from jaxrec.data.tabular import load_tabular
from jaxrec.errors import DataError
path, limit, features = sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
t = time.perf_counter()
try:
    ds = load_tabular(path, label="label", features=features, max_value_bytes=limit)
    outcome = {"ok": True, "summary": ds.summary(), "cat_vocab_size": ds.feature("cat").vocab_size}
except DataError as e:
    outcome = {"ok": False, "error": str(e)}
outcome["seconds"] = time.perf_counter() - t
outcome["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(outcome))
"""


def write_csv(path: str | os.PathLike, rows: int, long_value_bytes: int = 0, long_row: int | None = None, seed: int = 0) -> None:
    """A CSV `label,cat,user,tags,price` of `rows` rows; with `long_value_bytes`, row `long_row`
    (default: the middle) has a `cat` value of that many bytes ('x' * n)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    long_row = rows // 2 if long_row is None else long_row
    label = rng.integers(0, 2, rows)
    cat = rng.integers(0, 10_000, rows)
    user = rng.integers(0, 200_000, rows)
    tags = rng.integers(0, 100, (rows, 3))
    price = rng.gamma(2.0, 10.0, rows).round(2)
    with open(path, "w") as fh:
        fh.write("label,cat,user,tags,price\n")
        step = 100_000
        for a in range(0, rows, step):
            lines = []
            for i in range(a, min(a + step, rows)):
                c = "x" * long_value_bytes if long_value_bytes and i == long_row else f"c{cat[i]}"
                lines.append(f"{label[i]},{c},u{user[i]},t{tags[i, 0]}|t{tags[i, 1]}|t{tags[i, 2]},{price[i]}\n")
            fh.write("".join(lines))


def load_in_subprocess(path: str | os.PathLike, max_value_bytes: int | None) -> dict:
    """Loads `path` with `load_tabular(..., max_value_bytes=...)` in a fresh Python; returns
    {ok, summary | error, seconds, peak_rss_mb}."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT), str(path), json.dumps(max_value_bytes), json.dumps(FEATURES)],
                         capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    if out.returncode != 0:
        raise RuntimeError(f"the loading subprocess failed (rc {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(rows: int, value_bytes: int, workdir: str | os.PathLike) -> dict:
    """The three loads of the module docstring; returns their outcomes and the two ratios."""
    workdir = Path(workdir)
    plain, long = workdir / "plain.csv", workdir / "long.csv"
    write_csv(plain, rows)
    write_csv(long, rows, long_value_bytes=value_bytes)
    runs = {
        "plain": load_in_subprocess(plain, 1 << 16),
        "long_default_limit": load_in_subprocess(long, 1 << 16),
        "long_accepted": load_in_subprocess(long, None),
    }
    base = runs["plain"]["peak_rss_mb"]
    return {
        "rows": rows,
        "value_bytes": value_bytes,
        "file_bytes": {"plain": plain.stat().st_size, "long": long.stat().st_size},
        "runs": runs,
        "ratio_long_default_limit": runs["long_default_limit"]["peak_rss_mb"] / base,
        "ratio_long_accepted": runs["long_accepted"]["peak_rss_mb"] / base,
    }


def page(result: dict) -> str:
    """docs/results/reader_memory.md from a result."""
    from common import claims_table, machine_line

    base = result["runs"]["plain"]["peak_rss_mb"]
    worst = max(result["ratio_long_default_limit"], result["ratio_long_accepted"])
    claims = claims_table([{"claim": "one huge categorical value costs < 2x the peak memory of the same file without it",
                            "figure": f"{result['ratio_long_default_limit']:.2f}x (refused at the default limit), "
                                      f"{result['ratio_long_accepted']:.2f}x (accepted)",
                            "seeds": "1 load each", "rule": "both loads, one measurement each (peak RSS is deterministic to a few MB)",
                            "verdict": "met" if worst < 2 else "not met"}])
    rows = [f"| {name} | {r['peak_rss_mb']:,.0f} | {r['peak_rss_mb'] / base:.2f} | {r['seconds']:.1f} | "
            f"{'loaded: ' + r['summary'].split(';')[0] if r['ok'] else 'DataError: ' + r['error'].split(': ', 1)[-1][:110]} |"
            for name, r in result["runs"].items()]
    return "\n".join([
        "# Reader memory: one huge categorical value",
        "",
        f"Generated by `{result['command']}` on {machine_line(result['machine'])}.",
        "",
        f"`load_tabular` on a {result['rows']:,}-row CSV (label, a vocabulary categorical, a hashed categorical, "
        f"a 3-token sequence, a float), without and with one value of {result['value_bytes']:,} bytes in the "
        "vocabulary categorical column; each load in a fresh subprocess, peak RSS = its `ru_maxrss` (imports included). "
        "Acceptance (issue 18): peak with the value < 2x peak without it.",
        "",
        "| load | peak RSS (MB) | x plain | seconds | outcome |",
        "|---|---:|---:|---:|---|",
        *rows,
        "",
        "Before the change, categorical strings were copied into a fixed-width numpy unicode array "
        "(rows x longest value x 4 bytes): 1M rows x 10 MB x 4 = 40 TB for this file.",
        "",
        *claims,
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--value-mb", type=float, default=10.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reader_memory.json"))
    ap.add_argument("--doc", action="store_true", help="only rewrite docs/results/reader_memory.md from --out")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    if args.doc:
        (ROOT / "docs" / "results" / "reader_memory.md").write_text(page(json.loads(Path(args.out).read_text())))
        return
    with tempfile.TemporaryDirectory(prefix="jaxrec_reader_memory_") as tmp:
        t = time.perf_counter()
        result = measure(args.rows, int(args.value_mb * (1 << 20)), tmp)
    from common import command, machine

    result.update(command=command(), machine=machine(), wall_seconds=time.perf_counter() - t)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for name, run in result["runs"].items():
        print(f"{name:20s} peak RSS {run['peak_rss_mb']:8.1f} MB  {run['seconds']:6.1f} s  "
              f"{'ok' if run['ok'] else 'DataError: ' + run['error'][:100]}")
    print(f"ratios vs plain: default limit {result['ratio_long_default_limit']:.2f}, accepted {result['ratio_long_accepted']:.2f}")
    print(f"wrote {args.out}")
    if Path(args.out).resolve() == (ROOT / "benchmarks" / "results" / "reader_memory.json").resolve():
        (ROOT / "docs" / "results" / "reader_memory.md").write_text(page(result))


if __name__ == "__main__":
    main()
