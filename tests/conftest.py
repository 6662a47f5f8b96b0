"""Shared fixtures: the real MovieLens-100K copy beside the repository, small configs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ML100K = Path(os.environ["JAXREC_DATA_DIR"]) / "ml-100k" if "JAXREC_DATA_DIR" in os.environ else ROOT.parent / "shared" / "data" / "ml-100k"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    assert (ML100K / "u.data").is_file(), f"MovieLens-100K not found at {ML100K}; set JAXREC_DATA_DIR"
    return ML100K


@pytest.fixture(scope="session")
def movielens(ml100k_dir):
    from jaxrec.data.movielens import load_movielens_100k

    return load_movielens_100k(str(ml100k_dir))


@pytest.fixture
def small_config(ml100k_dir):
    """DeepFM on MovieLens with a small MLP: a few seconds per epoch on CPU."""
    from jaxrec.train.config import default_config

    c = default_config()
    c.dataset.data_dir = str(ml100k_dir)
    c.model.name = "deepfm"
    c.model.embed_dim = 8
    c.model.hidden = (32,)
    c.train.num_epochs = 2
    c.train.progress_bar = False
    return c


@contextlib.contextmanager
def ray_cluster(**init_kwargs):
    """A local Ray cluster (`jaxrec.train.ray_ps.init_ray`) for a test, then a check that no raylet /
    gcs_server is left on the machine. Under pytest-xdist one cluster lives at a time: an exclusive
    lock on a file in the temp dir is held from start to check (the check is machine-wide, so another
    worker's live cluster would fail it)."""
    import ray

    from jaxrec.train import ray_ps

    with open(Path(tempfile.gettempdir()) / "jaxrec-tests-ray.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            ray_ps.init_ray(**init_kwargs)
            yield
        finally:
            ray.shutdown()
            time.sleep(1.0)
            left = subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True, text=True).stdout.split()
            fcntl.flock(lock, fcntl.LOCK_UN)
        assert not left, f"Ray processes left running: {left}"

def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (minutes each; also JAXREC_RUN_SLOW=1)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes-long test, skipped unless --runslow or JAXREC_RUN_SLOW=1")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("JAXREC_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (or JAXREC_RUN_SLOW=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
