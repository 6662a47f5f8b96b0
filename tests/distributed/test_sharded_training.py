"""Training with row-sharded tables on a mesh equals single-device training; checkpoints saved on
8 devices restore on 1 and 4. Runs `_sharded_training_checks.py` with 8 forced CPU devices."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

CHECKS = Path(__file__).with_name("_sharded_training_checks.py")


def test_sharded_training_matches_single_device(ml100k_dir):
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + ["--xla_force_host_platform_device_count=8"])
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, str(CHECKS), str(ml100k_dir)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0 and "ALL CHECKS PASSED" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.count("ok   ") == 22, proc.stdout
