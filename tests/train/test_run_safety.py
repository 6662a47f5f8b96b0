"""Issue 18: a workdir survives kills, damage and misuse.

Each test reproduces a defect of the earlier trainer (the comment says what it did) and checks
the fixed behaviour; results are compared bit for bit with an uninterrupted run.
"""

import json
import shutil

import numpy as np
import pytest

from jaxrec.errors import CheckpointDamaged, ConfigError, DataError, WorkdirConflict
from jaxrec.train import workdir as workdir_lib
from jaxrec.train.checkpointing import MANIFEST, Checkpointer
from jaxrec.train.config import validate
from jaxrec.train.experiment import steps_per_call
from jaxrec.train.loop import divergence, train_and_evaluate


def _same(a: dict, b: dict) -> None:
    assert a["test"] == b["test"] and a["valid"] == b["valid"] and a["steps"] == b["steps"]
    assert a["best_epoch"] == b["best_epoch"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, ml100k_dir, movielens):
    """A 2-epoch run (78 steps an epoch, mid-epoch checkpoints every 26 steps, all kept)."""
    from jaxrec.train.config import default_config

    c = default_config()
    c.dataset.data_dir = str(ml100k_dir)
    c.model.embed_dim, c.model.hidden = 8, (32,)
    c.train.num_epochs, c.train.progress_bar = 2, False
    c.train.checkpoint_every_steps, c.train.keep_checkpoints = 26, 10
    c.early_stopping.patience = 0
    work = tmp_path_factory.mktemp("reference")
    result = train_and_evaluate(c, work, dataset=movielens)
    return c, work, result


def _copy(reference, tmp_path):
    config, work, result = reference
    shutil.copytree(work, tmp_path / "w")
    (tmp_path / "w" / "metrics.json").unlink()
    return config.copy_and_resolve_references(), tmp_path / "w", result


def _drop_steps_after(directory, step):
    for p in directory.iterdir():
        if p.name.isdigit() and int(p.name) > step:
            shutil.rmtree(p)


def test_default_cadence_checkpoints_mid_epoch(reference):
    # Before: checkpoint_every_steps did nothing with steps_per_call=0 (one call an epoch).
    _, work, _ = reference
    assert Checkpointer(work / "checkpoints", keep=10).all_steps() == [26, 52, 78, 104, 130, 156]
    assert json.loads((work / "run.json").read_text())["rows"] == {"test": 10000, "train": 80000, "valid": 10000}


def test_kill_between_best_and_latest_resumes(reference, tmp_path, movielens):
    # Before: best/1 written, checkpoints/156 not: every rerun failed with StepAlreadyExistsError.
    config, work, want = _copy(reference, tmp_path)
    _drop_steps_after(work / "checkpoints", 130)
    assert (work / "best" / "1").is_dir()
    _same(train_and_evaluate(config, work, dataset=movielens), want)


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete_file", "empty_dir", "extra_file"])
def test_damaged_latest_checkpoint_falls_back(reference, tmp_path, movielens, damage, caplog):
    # Before: 4 kinds of damage were tracebacks and a flipped byte loaded silently.
    config, work, want = _copy(reference, tmp_path)
    _drop_steps_after(work / "checkpoints", 130)
    step_dir = work / "checkpoints" / "130"
    files = sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST)
    victim = max(files, key=lambda p: p.stat().st_size)
    if damage == "flip_byte":
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x40
        victim.write_bytes(bytes(data))
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "delete_file":
        victim.unlink()
    elif damage == "empty_dir":
        for p in step_dir.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    else:
        (step_dir / "state" / "stray").write_text("x")
    with caplog.at_level("WARNING", logger="jaxrec"):
        result = train_and_evaluate(config, work, dataset=movielens)
    _same(result, want)
    assert "checkpoint step 130 is damaged" in caplog.text and "resuming from step 104" in caplog.text
    assert [p.name.split("-")[0] for p in (work / "checkpoints-damaged").iterdir()] == ["130"]  # kept, not deleted


def test_every_checkpoint_damaged_is_a_clear_error(reference, tmp_path, movielens):
    config, work, _ = _copy(reference, tmp_path)
    for step in Checkpointer(work / "checkpoints", keep=10).all_steps():
        (work / "checkpoints" / str(step) / MANIFEST).write_text(json.dumps({"version": 1, "files": {}}))
    with pytest.raises(CheckpointDamaged, match="every checkpoint in .*checkpoints is damaged"):
        train_and_evaluate(config, work, dataset=movielens)


def test_best_checkpoint_damage_is_named_at_eval(reference, tmp_path, movielens):
    from jaxrec.train.experiment import evaluate_checkpoint

    _, work, _ = _copy(reference, tmp_path)
    best = next(p for p in (work / "best" / "1").rglob("*") if p.is_file() and p.name != MANIFEST and p.stat().st_size > 100)
    best.write_bytes(best.read_bytes()[:-1] + b"\0")
    with pytest.raises(CheckpointDamaged, match=r"best/1: file .* (other bytes|bytes, \d+ were written)"):
        evaluate_checkpoint(work, "test", "best", dataset=movielens)


def test_resume_with_another_steps_per_call(reference, tmp_path, movielens):
    # Before: `start_step 52 is not a multiple of steps_per_call 20`.
    config, work, want = _copy(reference, tmp_path)
    _drop_steps_after(work / "checkpoints", 52)
    shutil.rmtree(work / "best" / "1")
    config.train.steps_per_call = 20
    got = train_and_evaluate(config, work, dataset=movielens)
    assert got["test"] == want["test"] and got["steps"] == want["steps"] == 156  # bit-identical after a 8-step first call
    _same(got, want)
    assert (work / "best" / "1").is_dir()  # the replayed epoch wrote its best checkpoint again


def test_another_config_is_refused_before_anything_is_written(reference, tmp_path, movielens):
    # Before: batch_size=2048 on a killed run exited 0 with half the training; another seed
    # continued silently; another embed_dim crashed after overwriting config.json.
    config, work, _ = _copy(reference, tmp_path)
    before = (work / "config.json").read_text()
    for key, value in (("train.batch_size", 2048), ("seed", 1), ("model.embed_dim", 16)):
        c = config.copy_and_resolve_references()
        section, _, leaf = key.rpartition(".")
        (c[section] if section else c)[leaf] = value
        with pytest.raises(WorkdirConflict, match=rf"holds another run[\s\S]*{key}: .* in the workdir, {value} now"):
            train_and_evaluate(c, work, dataset=movielens)
        assert (work / "config.json").read_text() == before
    more = config.copy_and_resolve_references()
    more.train.num_epochs = 3
    with pytest.raises(WorkdirConflict, match="train.num_epochs may change with --config.train.allow_config_change=true"):
        train_and_evaluate(more, work, dataset=movielens)


def test_harmless_and_allowed_changes_resume(reference, tmp_path, movielens):
    config, work, want = _copy(reference, tmp_path)
    config.train.eval_batch_size = 4096  # changes no computation
    config.train.keep_checkpoints = 3
    _same(train_and_evaluate(config, work, dataset=movielens), want)
    config.train.num_epochs, config.train.allow_config_change = 3, True
    result = train_and_evaluate(config, work, dataset=movielens)
    assert result["steps"] == 234 and result["epochs_run"] == 3
    assert json.loads((work / "config.json").read_text())["train"]["num_epochs"] == 3


def test_other_data_is_refused(reference, tmp_path, movielens):
    import dataclasses

    config, work, _ = _copy(reference, tmp_path)
    train = dict(movielens.splits["train"])
    train["labels"] = 1.0 - train["labels"]
    other = dataclasses.replace(movielens, splits={**movielens.splits, "train": train})
    with pytest.raises(WorkdirConflict, match=r"data: other content than the run was trained on \(rows: test 10000 -> 10000"):
        train_and_evaluate(config, work, dataset=other)


def test_concurrent_run_is_refused_and_a_dead_holder_is_not(reference, tmp_path, movielens):
    # Before: two train.py on one workdir raced.
    config, work, want = _copy(reference, tmp_path)
    with workdir_lib.lock(work):
        with pytest.raises(WorkdirConflict, match=r"is in use by process \d+ on "):
            train_and_evaluate(config, work, dataset=movielens)
    (work / ".lock").write_text("process 1 on elsewhere since long ago")  # a stale lock file: no live holder
    _same(train_and_evaluate(config, work, dataset=movielens), want)


def test_single_class_validation_fails_before_training(small_config, movielens, tmp_path):
    # Before: trained, then FileNotFoundError (no best checkpoint: AUC was NaN every epoch).
    import dataclasses

    valid = dict(movielens.splits["valid"])
    valid["labels"] = np.zeros_like(valid["labels"])
    one_class = dataclasses.replace(movielens, splits={**movielens.splits, "valid": valid})
    with pytest.raises(DataError, match="valid split .* has only label 0 .*early_stopping.metric='auc' is undefined"):
        train_and_evaluate(small_config, tmp_path, dataset=one_class)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("key, value, message", [
    ("optimizer.lr", 0.0, r"optimizer.lr=0.0: the learning rate must be a finite number > 0"),
    ("optimizer.lr", -1.0, r"optimizer.lr=-1.0"),
    ("sparse_optimizer.lr", float("nan"), r"sparse_optimizer.lr=nan"),
    ("train.keep_checkpoints", 0, r"train.keep_checkpoints=0 must be >= 1 \(a checkpoint must be kept"),
    ("early_stopping.metric", "accuracy", r"early_stopping.metric='accuracy'.*expected one of \['auc', 'gauc', 'logloss'\]"),
    ("early_stopping.metric", "logloss", r"early_stopping.metric='logloss' improves when it goes down: set early_stopping.mode='min'"),
    ("model.embed_dim", 0, r"model.embed_dim=0 must be >= 1"),
    ("train.divergence_factor", -1.0, r"train.divergence_factor=-1.0 must be >= 0"),
    ("early_stopping.patience", -1, r"patience=-1 .* must be >= 0"),
])
def test_bad_values_are_refused_before_training(small_config, key, value, message):
    # Before: lr=0 / -1 trained to rc 0, accuracy failed after an epoch, embed_dim=0 was a traceback.
    section, leaf = key.split(".")
    small_config[section][leaf] = value
    with pytest.raises(ConfigError, match=message):
        validate(small_config)


def test_divergence_by_hand():
    ok = np.full(20, 0.5, np.float32)
    assert divergence(ok, np.zeros(0, np.float32), 100.0) is None
    assert divergence(np.array([0.5, np.nan], np.float32), ok, 100.0) == (1, "is not finite")
    blown = np.r_[np.full(12, 0.5), 49.0, 1e12].astype(np.float32)  # median 0.5: 49 > 100 x 0.5 is false, 1e12 true
    assert divergence(blown, np.zeros(0, np.float32), 100.0)[0] == 13
    assert divergence(blown, np.zeros(0, np.float32), 50.0)[0] == 12
    assert divergence(blown, np.zeros(0, np.float32), 0.0) is None  # off: only NaN / inf
    assert divergence(np.array([1e9], np.float32), np.zeros(5, np.float32), 100.0) is None  # a zero median: no reference
    # Before: no reference until 10 losses were known, so sgd with lr=1e4 on MovieLens (0.693, 290.7, 8.4e6, then
    # ~1e3 a step) trained to a logloss of 2,545 without a word.
    early = np.array([0.693, 290.7, 8.4e6, 940.0], np.float32)
    assert divergence(early, np.zeros(0, np.float32), 100.0)[0] == 1
    assert divergence(np.array([0.693, 9.97, 6.2], np.float32), np.zeros(0, np.float32), 100.0) is None  # noisy, not diverging


def test_mid_epoch_cadence_sets_the_call_size(small_config):
    t = small_config.train
    assert steps_per_call(t, 78) == 78
    t.checkpoint_every_steps = 26
    assert steps_per_call(t, 78) == 26
    t.steps_per_call = 10
    assert steps_per_call(t, 78) == 10
    t.checkpoint_every_steps, t.steps_per_call = 500, 0
    assert steps_per_call(t, 78) == 78


def _clicks(path, n, seed, extra_users=0):
    rng = np.random.default_rng(seed)
    user, item = rng.integers(0, 50, n), rng.integers(0, 80, n)
    label = (rng.random(n) < 1 / (1 + np.exp(-3 * (np.sin(user) + np.cos(item) - 0.3)))).astype(int)
    with open(path, "w") as fh:
        fh.write("user,item,category,tags,price,label\n")
        for i in range(extra_users):  # users that sort before every other: they shift all vocabulary ids
            fh.write(f"a{i},i{i},c0,1,1.0,{i % 2}\n")
        for i in range(n):
            fh.write(f"u{user[i]},i{item[i]},c{item[i] % 7},{i % 10},{item[i] * 0.7:.2f},{label[i]}\n")


def test_eval_encodes_with_the_vocabularies_saved_at_training(tmp_path):
    # Before: eval.py refit the vocabularies from the train file: a changed file changed test AUC.
    from jaxrec.train.cli import apply_overrides, load_config_file
    from jaxrec.train.config import build_dataset
    from jaxrec.train.experiment import evaluate_checkpoint
    from tests.conftest import ROOT

    for name, n, seed in (("train", 2400, 0), ("valid", 300, 1), ("test", 300, 2)):
        _clicks(tmp_path / f"{name}.csv", n, seed)
    config = load_config_file(str(ROOT / "configs/deepfm_csv.py"))
    apply_overrides(config, [f"--config.dataset.path={tmp_path / 'train.csv'}", f"--config.dataset.valid_path={tmp_path / 'valid.csv'}",
                             f"--config.dataset.test_path={tmp_path / 'test.csv'}", "--config.train.batch_size=128",
                             "--config.train.num_epochs=2", "--config.model.hidden=(16,)", "--config.train.progress_bar=false"])
    result = train_and_evaluate(config, tmp_path / "run")
    assert (tmp_path / "run" / "fitted.json").is_file()
    _clicks(tmp_path / "train.csv", 2400, 0, extra_users=5)  # the train file changes after training
    refit = build_dataset(config).splits["test"]["user"]
    saved = build_dataset(config, fitted=workdir_lib.saved_fitted(tmp_path / "run")).splits["test"]["user"]
    assert not np.array_equal(refit, saved)  # refitting would have shifted every user id
    ev = evaluate_checkpoint(tmp_path / "run", "test", "best")
    assert ev["auc"] == result["test"]["auc"] and ev["logloss"] == result["test"]["logloss"]


def test_config_differences_by_hand():
    diff = workdir_lib.config_differences
    assert diff({"train": {"batch_size": 1024}}, {"train": {"batch_size": 2048}}) == {"train.batch_size": (1024, 2048)}
    assert list(diff({"tables": {}}, {"tables": {"item_id": {"amtl": {}}}})) == ["tables.item_id.amtl"]  # AMTL added
    assert diff({"train": {}}, {"train": {"divergence_factor": 100.0}}, {"train": {"divergence_factor": 100.0}}) == {}
    assert diff({"eval_splits": ["valid", "test"]}, {"eval_splits": ("valid", "test")}) == {}  # JSON lists == tuples
