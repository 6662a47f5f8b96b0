"""The benchmark scripts read the test split only through `common.read_test` (docs/results/README.md).

A static check over `benchmarks/*.py`: every place that can read test -- a call of
`train_and_evaluate` / `evaluate_checkpoint` (they evaluate test), a call given the split name
"test", a tuple or list of split names holding "test", or `<...>.splits["test"]` -- must sit
inside the thunk handed to `read_test` (a lambda, or a function whose name is passed to it), or carry a `# protocol: <why this is not a choice>`
comment on its line (for example a Bayes-optimal oracle's AUC, or a drill that compares two runs'
metrics for equality). A reviewer reads the exceptions with `grep -n "protocol:" benchmarks/`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if p.name != "common.py")
READERS = {"train_and_evaluate", "evaluate_checkpoint"}


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_test(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == "test"


def unguarded_reads(source: str) -> list[int]:
    """Line numbers of test-split reads outside `read_test` thunks and without a protocol comment."""
    tree = ast.parse(source)
    lines = source.splitlines()
    thunk_names, allowed = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _name(node.func) == "read_test" and len(node.args) >= 2:
            thunk = node.args[1]
            if isinstance(thunk, ast.Name):
                thunk_names.add(thunk.id)
            else:
                allowed.append(thunk)
    allowed += [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name in thunk_names]
    inside = {id(sub) for a in allowed for sub in ast.walk(a)}
    bad = []
    for node in ast.walk(tree):
        reads = False
        if isinstance(node, ast.Call):
            reads = (_name(node.func) in READERS or any(_is_test(a) for a in node.args)
                     or any(_is_test(k.value) and k.arg in ("split", "splits") for k in node.keywords))
        elif isinstance(node, ast.Subscript):
            reads = _is_test(node.slice) and _name(node.value) == "splits"
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):  # e.g. `for split in ("valid", "test")`
            reads = any(_is_test(e) for e in node.elts)
        if reads and id(node) not in inside and "# protocol:" not in lines[node.lineno - 1]:
            bad.append(node.lineno)
    return sorted(set(bad))



def test_the_check_finds_a_test_read_and_accepts_a_thunk():
    src = ('def pick(exp, p):\n    return evaluate(exp, p, "test")\n'
           'def final(exp, p):\n    return common.read_test("x", lambda: evaluate(exp, p, "test"))\n'
           'def final2(exp, p):\n    def thunk():\n        return ds.splits["test"]\n    return read_test("y", thunk)\n'
           'oracle = auc(ds.splits["test"]["label"])  # protocol: the oracle line, no choice\n'
           'r = train_and_evaluate(c, w)\n')
    assert unguarded_reads(src) == [2, 10]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_benchmark_reads_test_only_through_read_test(script):
    bad = unguarded_reads(script.read_text())
    assert not bad, (f"{script.relative_to(ROOT)} lines {bad} read the test split outside common.read_test "
                     "(wrap the final configuration's evaluation in read_test, or say why it is no choice with "
                     "'# protocol: ...' on the line)")

