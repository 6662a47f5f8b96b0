"""examples/custom_loop.py trains DeepFM from jaxrec pieces in a hand-written optax loop."""

import runpy

from tests.conftest import ROOT


def test_custom_loop_learns(ml100k_dir):
    module = runpy.run_path(str(ROOT / "examples" / "custom_loop.py"))
    metrics = module["main"](str(ml100k_dir), epochs=1)
    assert metrics["auc"] > 0.74 and metrics["logloss"] < 0.6
