"""Kill-anywhere drill: SIGKILL `train.py` at random instants, rerun, compare with an uninterrupted run.

    python benchmarks/kill_anywhere.py run [--trials 30] [--kills 1] [--seed 0]
    python benchmarks/kill_anywhere.py doc        # the page from the JSON

Each trial starts a fresh workdir, kills the run `--kills` times (SIGKILL, no clean-up) at an
instant drawn uniformly over the uninterrupted run's wall time (each rerun is killed again
until the kills are spent; a run that finishes before its instant restarts the trial from an
empty workdir, and is reported as a miss, not a kill), then reruns it to the end and compares `metrics.json` (valid and
test metrics, steps, best epoch) with the uninterrupted run's: it must be identical. After each
kill the workdir is classified by what the kill interrupted: a checkpoint write (an orbax
temporary directory is left), the best/latest window (`best/<epoch>` newer than the latest
epoch-end checkpoint), a step written without its manifest, before the first checkpoint, or
between checkpoints. The run: DeepFM (embed 8, MLP 32) on MovieLens-100K, 3 epochs of 78 steps,
a checkpoint every 10 steps (`configs/deepfm_movielens.py` with overrides).

Writes benchmarks/results/kill_anywhere.json and docs/results/kill_anywhere.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS, RESULTS, ROOT, claims_table, command, default_data_dir, machine, machine_line, write_json  # noqa: E402

SPE = 78  # steps per epoch at batch 1024 on the 80k train rows


def train_cmd(workdir: Path, data_dir: str, epochs: int) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs/deepfm_movielens.py"),
            "--workdir", str(workdir), f"--config.dataset.data_dir={data_dir}", "--config.model.embed_dim=8",
            "--config.model.hidden=(32,)", f"--config.train.num_epochs={epochs}", "--config.train.checkpoint_every_steps=10",
            "--config.early_stopping.patience=0", "--config.train.progress_bar=false"]


def outcome(m: dict) -> dict:
    return {k: m[k] for k in ("valid", "test", "steps", "best_epoch")}  # protocol: the drill compares two runs for equality, no choice


def steps_in(directory: Path) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def classify(workdir: Path) -> str:
    """What a kill interrupted, read off the workdir it left."""
    ckpt, best = workdir / "checkpoints", workdir / "best"
    tmp = [p for d in (ckpt, best) if d.is_dir() for p in d.iterdir() if "tmp" in p.name]
    if tmp:
        return "inside a checkpoint write"
    latest, best_steps = steps_in(ckpt), steps_in(best)
    if latest and not (ckpt / str(latest[-1]) / "jaxrec_manifest.json").is_file():
        return "after a write, before its manifest"
    if best_steps and (not latest or best_steps[-1] >= latest[-1] // SPE):
        return "best/latest window"
    if not latest:
        return "before the first checkpoint"
    return "between checkpoints"


def run(args) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="kill_anywhere_"))
    try:
        tic = time.perf_counter()
        subprocess.run(train_cmd(root / "ref", args.data_dir, args.epochs), check=True, env=env, capture_output=True)
        wall = time.perf_counter() - tic
        want = outcome(json.loads((root / "ref" / "metrics.json").read_text()))
        print(f"uninterrupted run: {wall:.1f} s; test auc {want['test']['auc']:.6f}", flush=True)
        trials = []
        for i in range(args.trials):
            work = root / f"t{i}"
            kills = []
            missed = 0
            while len(kills) < args.kills:
                at = rng.uniform(0.0, wall)
                proc = subprocess.Popen(train_cmd(work, args.data_dir, args.epochs), env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    proc.wait(timeout=at)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                if proc.returncode == 0:  # the run ended before the instant: not a kill; start the trial afresh
                    missed += 1
                    shutil.rmtree(work, ignore_errors=True)
                    kills = []
                    continue
                kills.append({"at_s": round(at, 3), "landed": classify(work)})
            out = subprocess.run(train_cmd(work, args.data_dir, args.epochs), env=env, capture_output=True, text=True)
            resumed = [l for l in out.stderr.splitlines() if "resumed from" in l or "damaged" in l]
            got = outcome(json.loads((work / "metrics.json").read_text())) if out.returncode == 0 else None
            trial = {"kills": kills, "missed": missed, "rerun_rc": out.returncode, "identical": got == want,
                     "resume_log": [l.split(" ", 2)[-1] for l in resumed][:3],
                     "error": out.stderr.strip().splitlines()[-1] if out.returncode else None}
            trials.append(trial)
            print(f"trial {i + 1}/{args.trials}: " + ", ".join(f"{k['at_s']:.2f}s {k['landed']}" for k in kills)
                  + f" -> {'identical' if trial['identical'] else 'DIFFERENT: ' + str(trial['error'])}", flush=True)
            shutil.rmtree(work, ignore_errors=True)
        return {"command": command(), "machine": machine(), "uninterrupted_wall_s": wall, "reference": want,
                "trials": trials, "kills": sum(len(t["kills"]) for t in trials),
                "identical": sum(t["identical"] for t in trials), "missed": sum(t["missed"] for t in trials),
                "landed": dict(Counter(k["landed"] for t in trials for k in t["kills"]))}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def doc(payload: dict) -> str:
    n = len(payload["trials"])
    lines = [
        "# Kill-anywhere drill",
        "",
        f"Generated by `{payload['command']}` (page: `python benchmarks/kill_anywhere.py doc`) on "
        f"{machine_line(payload['machine'])}.",
        "",
        f"**{payload['identical']} of {n} trials** ended with metrics identical to the uninterrupted run "
        f"({payload['kills']} SIGKILLs in all, at instants drawn uniformly over the uninterrupted run's "
        f"{payload['uninterrupted_wall_s']:.1f} s; each trial's rerun resumed from what the kill left). "
        f"{payload.get('missed', 0)} drawn instants fell after a run had already finished (this machine is shared, "
        "so run times vary); those trials were started afresh and are not counted as kills.",
        "",
        "| where the kill landed | kills |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in sorted(payload["landed"].items(), key=lambda kv: -kv[1])),
        "",
        "The run: DeepFM (embed 8, MLP 32) on MovieLens-100K, 3 epochs of 78 steps, a checkpoint every 10 "
        "steps; identical means the same valid and test metrics (every float), steps and best epoch. "
        "See the module docstring of `benchmarks/kill_anywhere.py` for how a landing is classified.",
        "",
        "| trial | kills (s after start: what was interrupted) | rerun | identical |",
        "|---:|---|---|:---:|",
    ]
    for i, t in enumerate(payload["trials"]):
        kills = "; ".join(f"{k['at_s']:.2f}: {k['landed']}" for k in t["kills"])
        rerun = (t["resume_log"][0] if t["resume_log"] else "fresh start") if t["rerun_rc"] == 0 else f"rc {t['rerun_rc']}: {t['error']}"
        lines.append(f"| {i} | {kills} | {rerun} | {'yes' if t['identical'] else '**no**'} |")
    lines += ["", *claims_table([{
        "claim": "a kill -9 anywhere in a run leaves a workdir whose rerun resumes and ends identical to an uninterrupted run",
        "figure": f"{payload['identical']} of {n} trials identical ({payload['kills']} kills)", "seeds": f"{n} trials",
        "rule": "every trial", "verdict": "met" if payload["identical"] == n else "not met"}])]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "doc"])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--kills", type=int, default=1, help="kills per trial before the final rerun")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_dir", default=default_data_dir())
    p.add_argument("--out", default="kill_anywhere", help="results name (benchmarks/results/<out>.json, docs/results/<out>.md)")
    args = p.parse_args()
    if args.what == "run":
        payload = run(args)
        write_json(args.out, payload)
    else:
        payload = json.loads((RESULTS / f"{args.out}.json").read_text())
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / f"{args.out}.md").write_text(doc(payload))
    print(f"{payload['identical']} of {len(payload['trials'])} trials identical; {payload['landed']}")
    if payload["identical"] != len(payload["trials"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
