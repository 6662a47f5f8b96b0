"""Issue 18's bad-input table stays honest: the cases of benchmarks/bad_inputs.py that read no MovieLens
and train nothing (config, tabular CSV, Parquet, the first MovieLens and eval checks) give a jaxrec error
class, or, where the case says so, their documented and counted handling."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import ROOT, ML100K


def _script():
    if "bad_inputs_script" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bad_inputs_script", ROOT / "benchmarks" / "bad_inputs.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["bad_inputs_script"] = module
        spec.loader.exec_module(module)
    return sys.modules["bad_inputs_script"]


FAST = [c for c in _script().CASES if c.tier == "fast"]


def test_the_table_is_large_and_covers_every_category():
    cases = _script().CASES
    assert len(cases) >= 74
    assert {c.category for c in cases} == set(_script().CATEGORIES)
    assert {c.category for c in FAST} >= {"config", "tabular CSV", "Parquet", "MovieLens", "eval"}


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    return _script().Context(tmp_path_factory.mktemp("bad_inputs"), str(ML100K))


@pytest.mark.parametrize("case", FAST, ids=[f"{c.category}: {c.input}" for c in FAST])
def test_fast_case(case, context):
    script = _script()
    result = script.run_case(case, context)
    if case.expect == "handled":
        assert result["outcome"] == "handled", result
    else:
        assert result["outcome"] == "error", result
        assert result["error"] in {e.__name__ for e in script.JAXREC_ERRORS}, result
    assert result["message"]
