"""train.py / eval.py: config errors name the key; a user's own CSV trains from a config file."""

import json
import textwrap

import numpy as np
import pytest

from jaxrec.train.cli import eval_main, train_main
from tests.conftest import ROOT


def run_train(argv, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(["train.py"] + argv)
    return e.value.code, capsys.readouterr().err


def test_unknown_override_key_is_named(capsys, tmp_path):
    code, err = run_train(["--config", str(ROOT / "configs/deepfm_movielens.py"), "--workdir", str(tmp_path),
                           "--config.optimizer.lrr=0.1"], capsys)
    assert code == 2 and "unknown config key 'config.optimizer.lrr' (did you mean 'lr'?)" in err
    code, err = run_train(["--config", str(ROOT / "configs/deepfm_movielens.py"), "--config.traim.batch_size=3"], capsys)
    assert code == 2 and "'traim'" in err
    code, err = run_train(["--config", str(ROOT / "configs/deepfm_movielens.py"), "--config.model.hiden=(3,)"], capsys)
    assert code == 2 and "model.hiden" in err and "did you mean 'hidden'" in err
    code, err = run_train(["--config", str(ROOT / "configs/deepfm_movielens.py"), "--config.train.batch_size=abc"], capsys)
    assert code == 2 and "train.batch_size" in err


def test_unknown_key_inside_a_config_file(capsys, tmp_path):
    cfg = tmp_path / "bad.py"
    cfg.write_text(textwrap.dedent("""
        from jaxrec.train.config import default_config
        def get_config():
            c = default_config()
            c.early_stopping.patiense = 3
            return c
    """))
    code, err = run_train(["--config", str(cfg)], capsys)
    assert code == 2 and "unknown config key 'early_stopping.patiense' (did you mean 'patience'?)" in err


def test_missing_data_dir_is_a_clear_error(capsys, tmp_path):
    code, err = run_train(["--config", str(ROOT / "configs/deepfm_movielens.py"), "--workdir", str(tmp_path / "w"),
                           f"--config.dataset.data_dir={tmp_path / 'nothing'}"], capsys)
    assert code == 2 and "does not exist (dataset.data_dir)" in err


def test_own_csv_trains_with_a_config_file_and_no_code(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 3000
    user = rng.integers(0, 50, n)
    item = rng.integers(0, 80, n)
    price = rng.gamma(2.0, 10.0, n)
    tags = ["|".join(map(str, rng.choice(10, rng.integers(0, 4), replace=False))) for _ in range(n)]
    logit = np.sin(user) + np.cos(item) + 0.02 * price - 0.5
    label = (rng.random(n) < 1 / (1 + np.exp(-3 * logit))).astype(int)
    csv = tmp_path / "clicks.csv"
    with open(csv, "w") as fh:
        fh.write("user,item,category,tags,price,label\n")
        for i in range(n):
            fh.write(f"u{user[i]},i{item[i]},c{item[i] % 7},{tags[i]},{price[i]:.2f},{label[i]}\n")
    workdir = tmp_path / "run"
    result = train_main(["train.py", "--config", str(ROOT / "configs/deepfm_csv.py"), "--workdir", str(workdir),
                         f"--config.dataset.path={csv}", "--config.train.batch_size=128", "--config.train.num_epochs=3",
                         "--config.model.hidden=(32,)", "--config.optimizer.lr=0.01", "--config.sparse_optimizer.lr=0.01",
                         "--config.train.progress_bar=false"])
    out = capsys.readouterr().out
    assert "test  auc" in out and result["test"]["auc"] > 0.7
    assert json.loads((workdir / "metrics.json").read_text())["dataset"] == "tabular"
    # eval.py on the same workdir
    ev = eval_main(["eval.py", "--workdir", str(workdir), "--split", "valid", "--checkpoint", "latest"])
    assert ev["split"] == "valid" and ev["checkpoint"] == "latest" and 0.5 < ev["auc"] <= 1.0


def test_eval_on_a_non_workdir(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        eval_main(["eval.py", "--workdir", str(tmp_path)])
    assert e.value.code == 2 and "config.json not found" in capsys.readouterr().err


def test_per_table_options_from_flags():
    from jaxrec.data.features import Categorical
    from jaxrec.train.cli import apply_overrides, load_config_file
    from jaxrec.train.config import table_options

    c = load_config_file(str(ROOT / "configs/deepfm_movielens.py"))
    apply_overrides(c, ["--config.tables.user_id.sharding=contiguous", "--config.tables.user_id.optimizer.name=ftrl",
                        "--config.tables.user_id.optimizer.lr=0.05", "--config.tables.item_id.init_scale=0.01"])
    opts = dict(table_options(c, (Categorical("user_id"), Categorical("item_id"))))
    assert opts["user_id"].sharding == "contiguous" and opts["user_id"].optimizer == (("lr", 0.05), ("name", "ftrl"))
    assert opts["item_id"].init_scale == 0.01 and opts["item_id"].optimizer is None


@pytest.mark.parametrize("override, message", [
    ("--config.mesh.shape=(2,)", "mesh.shape=(2,): expected () for one device or (data, model)"),
    ("--config.mesh.shape=(0, 1)", "mesh.shape=(0, 1): expected"),
    ("--config.mesh.table_sharding=rows", "mesh.table_sharding='rows': expected one of ('mod', 'contiguous')"),
    ("--config.model.hidden=(0,)", "model.hidden=(0,): layer sizes must be integers >= 1"),
])
def test_bad_mesh_and_layer_sizes_are_config_errors(override, message):
    # Before: the mesh values were accepted until the mesh was built (or never, for (2,)); hidden=(0,) was a
    # ZeroDivisionError in the initializer.
    from jaxrec.errors import ConfigError
    from jaxrec.train.cli import apply_overrides
    from jaxrec.train.config import default_config

    with pytest.raises(ConfigError) as e:
        apply_overrides(default_config(), [override])
    assert message in str(e.value)


def test_config_file_errors_name_the_file_and_line(tmp_path):
    # Before: a SyntaxError or a TypeError traceback from importlib / ml_collections.
    from jaxrec.errors import ConfigError
    from jaxrec.train.cli import load_config_file

    bad = tmp_path / "syntax.py"
    bad.write_text("from jaxrec.train.config import default_config\ndef get_config():\n    c = default_config(\n    return c\n")
    with pytest.raises(ConfigError, match=rf"{bad}:3: '\(' was never closed"):
        load_config_file(str(bad))
    typed = tmp_path / "typed.py"
    typed.write_text("from jaxrec.train.config import default_config\ndef get_config():\n    c = default_config()\n"
                     "    c.train.batch_size = 'big'\n    return c\n")
    with pytest.raises(ConfigError, match=rf"{typed}:4: get_config\(\) raised TypeError: .*batch_size"):
        load_config_file(str(typed))


def test_eval_of_a_workdir_without_checkpoints_or_with_a_broken_config(tmp_path, small_config):
    # Before: FileNotFoundError from the checkpointer (best/ or checkpoints/ missing), a JSONDecodeError for a
    # damaged config.json, a ValueError for which='newest'; a --workdir that is a file was a FileExistsError.
    from jaxrec.errors import ConfigError, DataError
    from jaxrec.train.experiment import evaluate_checkpoint
    from jaxrec.train.loop import train_and_evaluate

    (tmp_path / "config.json").write_text(small_config.to_json())
    with pytest.raises(DataError, match=r"best: no checkpoint \(the run ended before its first epoch.*try --checkpoint latest"):
        evaluate_checkpoint(tmp_path, "test", "best")
    assert not (tmp_path / "best").exists()  # the check creates nothing
    with pytest.raises(DataError, match=r"checkpoints: no checkpoint"):
        evaluate_checkpoint(tmp_path, "test", "latest")
    with pytest.raises(ConfigError, match="which='newest': expected 'best' or 'latest'"):
        evaluate_checkpoint(tmp_path, "test", "newest")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DataError, match=r"config\.json: not a readable config \(JSONDecodeError"):
        evaluate_checkpoint(tmp_path)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match=r"a_file: exists and is not a directory"):
        train_and_evaluate(small_config, tmp_path / "a_file")


def test_cli_logging_keeps_jaxrec_info_and_hides_jax_backend_probes():
    """On CPU, JAX logs "Unable to initialize backend 'tpu'" at INFO while probing; the CLI's
    logging shows jaxrec's INFO records and other libraries' warnings only."""
    import os
    import subprocess
    import sys

    code = ("import logging, jax\nfrom jaxrec.train import cli\ncli._setup_logging()\njax.devices()\n"
            "logging.getLogger('jaxrec.train.loop').info('epoch 1 done')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "epoch 1 done" in out.stderr
    assert "Unable to initialize backend" not in out.stderr, out.stderr
