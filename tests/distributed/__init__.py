"""Multi-device tests: the checks run in a subprocess with 8 forced CPU devices."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_on_8_cpu_devices(script: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs `script args` in a fresh Python with 8 forced CPU devices (the flag must be set
    before JAX starts, and this pytest process has already started it with one)."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + ["--xla_force_host_platform_device_count=8"])
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
