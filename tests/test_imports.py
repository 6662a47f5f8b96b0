"""Import hygiene: the package layers hold (`lint-imports`, contracts in pyproject.toml)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXREC_NO_XLA_DEFAULTS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return env


def test_import_contracts_hold():
    """`lint-imports` from the repository root: layers, train -> models only through the
    registry, no cycles between jaxrec's packages."""
    script = Path(sys.executable).with_name("lint-imports")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"lint-imports failed (pip install -e '.[test]' installs it):\n{out.stdout}\n{out.stderr}"
    assert "0 broken" in out.stdout, out.stdout

