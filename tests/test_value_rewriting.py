"""benchmarks/value_rewriting.py: its metrics by hand, and its --quick path end to end (slow: 30-50 s on
2 busy cores, mostly compilation), writing into a temporary folder."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import ML100K, ROOT


def _script():
    if "value_rewriting_script" not in sys.modules:
        sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports its sibling `common`
        spec = importlib.util.spec_from_file_location("value_rewriting_script", ROOT / "benchmarks" / "value_rewriting.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["value_rewriting_script"] = module
        spec.loader.exec_module(module)
    return sys.modules["value_rewriting_script"]


def test_metrics_by_hand():
    vr = _script()
    data = SimpleNamespace(bidwords=["comedy 1995", "comedy movies", "heat", "toy story"],
                           sources=np.array([0, 2]))
    task = SimpleNamespace(data=data)
    now = np.array([1.0, 2.0, 4.0, 8.0], np.float32)
    outputs = np.array([[1, 0, -1],     # query 0 (source 'comedy 1995'): source second, a non-bidword third
                        [2, 3, 0]])     # query 1 (source 'heat'): source first
    m = vr.metrics(task, np.array([0, 1]), outputs, now)
    assert m["exact@1"] == 0.5 and m["hit@10"] == 1.0
    assert m["partial@10"] == pytest.approx(3 / 6)          # 'comedy movies' (overlap 0.5), 'comedy 1995', 'heat'
    assert m["value@10"] == pytest.approx((2 + 1 + 0 + 4 + 8 + 1) / 6)
    assert m["halluc@10"] == pytest.approx(1 / 6)


@pytest.mark.slow
def test_quick_run_writes_a_page_and_never_leaves_the_trie(tmp_path, monkeypatch):
    vr = _script()
    common = sys.modules["common"]
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(common, "DOCS", tmp_path)
    monkeypatch.setattr(common, "_TEST_READS", [])
    monkeypatch.setattr(sys, "argv", ["value_rewriting.py", "--quick", "--data_dir", str(ML100K)])
    vr.main()
    out = json.loads((tmp_path / "results" / "value_rewriting.json").read_text())
    test = out["results"]["sft"][0]["test"]
    assert set(test) == {"0.0", "2.0", "free"}
    assert all(test[a]["halluc@10"] == 0.0 for a in ("0.0", "2.0"))     # the trie: every output is a bidword
    assert test["2.0"]["value@10"] > test["0.0"]["value@10"]
    assert {m for m in out["final"]} == {"dpo", "wdpo"} and len(out["final"]["wdpo"]["test"]) == 1
    labels = [r["label"] for r in out["test_reads"]]
    assert len(labels) == len(set(labels)) == 5                         # 2 alphas + unconstrained + DPO + WDPO
    page = (tmp_path / "value_rewriting.md").read_text()
    assert "## Claims" in page and "Quick run" in page
