"""Import hygiene: the package layers hold (`lint-imports`, contracts in pyproject.toml), and
importing jaxrec changes nothing in the environment (jaxrec sets no XLA flags)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # a default would be added to an unset XLA_FLAGS
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


def test_importing_jaxrec_leaves_the_environment_alone():
    code = """
import os
before = dict(os.environ)
import jaxrec
assert dict(os.environ) == before, "import jaxrec changed os.environ"
import jax, flax, optax, orbax.checkpoint  # these set their own variables (TF_CPP_MIN_LOG_LEVEL, ...)
before = dict(os.environ)
import jaxrec.train.cli, jaxrec.train.loop, jaxrec.models, jaxrec.distributed.runtime
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
assert not changed, f"importing jaxrec's modules changed {changed}"
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
