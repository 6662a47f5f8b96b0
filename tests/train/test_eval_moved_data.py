"""Issue 19, item 5: data files moved after training are re-pointed with --config.dataset.path=... (eval.py
and a train.py rerun), accepted only when the data there is the data the run was trained on."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from jaxrec.errors import WorkdirConflict
from jaxrec.train.cli import apply_overrides, eval_main, load_config_file
from jaxrec.train.loop import train_and_evaluate
from tests.conftest import ROOT


def _clicks(path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    user, item = rng.integers(0, 40, n), rng.integers(0, 60, n)
    label = (rng.random(n) < 1 / (1 + np.exp(-3 * (np.sin(user) + np.cos(item))))).astype(int)
    with open(path, "w") as fh:
        fh.write("user,item,category,tags,price,label\n")
        for i in range(n):
            fh.write(f"u{user[i]},i{item[i]},c{item[i] % 7},{i % 10},{item[i] * 0.7:.2f},{label[i]}\n")


def _paths(folder) -> list[str]:
    return [f"--config.dataset.{key}={folder / (name + '.csv')}"
            for key, name in (("path", "train"), ("valid_path", "valid"), ("test_path", "test"))]


def _eval_fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        eval_main(["eval.py"] + argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_moved_files_are_re_pointed_at_eval_and_rerun(tmp_path, capsys):
    old, new, workdir = tmp_path / "old", tmp_path / "new", tmp_path / "run"
    old.mkdir()
    for name, n, seed in (("train", 1600, 0), ("valid", 300, 1), ("test", 300, 2)):
        _clicks(old / f"{name}.csv", n, seed)
    config = load_config_file(str(ROOT / "configs/deepfm_csv.py"))
    apply_overrides(config, _paths(old) + ["--config.train.batch_size=200", "--config.train.num_epochs=1",
                                           "--config.model.hidden=(8,)", "--config.train.progress_bar=false"])
    # Fitted numerics train end to end and eval.py re-applies the saved boundaries / mean and std.
    config.dataset.features = list(config.dataset.features)[:4] + [
        {"type": "numeric", "name": "price_q", "column": "price", "buckets": {"quantiles": 5}},
        {"type": "numeric", "name": "price_z", "column": "price", "transform": "standardize"}]
    result = train_and_evaluate(config, workdir)
    fitted = {f["name"]: f for f in json.loads((workdir / "fitted.json").read_text())["features"]}
    assert len(fitted["price_q"]["boundaries"]) == 4 and fitted["price_z"]["std"] > 0
    shutil.move(old, new)  # the data moves

    err = _eval_fails(["--workdir", str(workdir)], capsys)
    assert f"{old / 'train.csv'}: no such file" in err
    ev = eval_main(["eval.py", "--workdir", str(workdir), "--split", "test"] + _paths(new))
    assert (ev["auc"], ev["logloss"], ev["count"]) == (result["test"]["auc"], result["test"]["logloss"], 300)

    # Other data at the new place is refused, naming the keys and the rows.
    _clicks(new / "test.csv", 250, 2)
    err = _eval_fails(["--workdir", str(workdir)] + _paths(new), capsys)
    assert "dataset.path, dataset.test_path, dataset.valid_path re-pointed, but the data there is not the data" in err
    assert "test 300 -> 250" in err
    # Keys that change what the checkpoint computes cannot be overridden at evaluation.
    err = _eval_fails(["--workdir", str(workdir), "--config.model.embed_dim=8"], capsys)
    assert "eval.py --config.model.embed_dim: a trained run's model.embed_dim cannot change at evaluation" in err

    # train.py reruns on the workdir with the moved paths: same data, so it is the same run (nothing to train).
    _clicks(new / "test.csv", 300, 2)
    apply_overrides(config, _paths(new))
    again = train_and_evaluate(config, workdir)
    assert again["test"]["auc"] == result["test"]["auc"]
    assert json.loads((workdir / "config.json").read_text())["dataset"]["path"] == str(new / "train.csv")
    # ... and with other data there, it is refused.
    _clicks(new / "valid.csv", 300, 5)
    with pytest.raises(WorkdirConflict, match=r"data: other content than the run was trained on"):
        train_and_evaluate(config, workdir)
