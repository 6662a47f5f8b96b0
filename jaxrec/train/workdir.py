"""A workdir belongs to one run: its identity (config and data), and one process at a time.

`<workdir>/config.json` is the config the run was started with, `<workdir>/run.json` its data
identity (SHA-256 of the encoded splits and their row counts) and `<workdir>/fitted.json` what
the loader fitted on the train split (vocabularies; `eval.py` encodes with it instead of
refitting, so a train file changed after training cannot change the ids). A rerun on the same
workdir resumes only if it is the same run:

* keys that cannot change the computation (`HARMLESS`: progress bar, checkpoint cadence,
  evaluation batching, data paths whose content is checked by the data identity) may differ;
* keys that extend or re-steer a run (`ALLOWED`: more epochs, patience, the learning rate to
  resume a run that diverged from its last good checkpoint) may differ with
  `train.allow_config_change=True` (the learning-rate schedule, which depends on the total
  number of steps, is then that of the new config);
* any other difference, or other data, is refused with `WorkdirConflict` listing every
  difference, before anything in the workdir is written.

`lock(workdir)` holds an exclusive `flock` on `<workdir>/.lock` for the run's lifetime; the
kernel releases it when the process dies (kill -9 included), so a stale lock cannot block a
rerun. (flock on NFS is advisory and may not work across hosts.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import ml_collections
import numpy as np

from jaxrec.errors import WorkdirConflict

HARMLESS = frozenset({
    "train.progress_bar", "train.checkpoint_every_steps", "train.steps_per_call", "train.keep_checkpoints",
    "train.eval_batch_size", "train.eval_steps_per_call", "train.allow_config_change", "train.divergence_factor",
    "eval_splits", "dataset.data_dir", "dataset.path", "dataset.valid_path", "dataset.test_path",
})
ALLOWED = frozenset({"train.num_epochs", "early_stopping.patience", "early_stopping.min_delta", "train.init_from",
                     "optimizer.lr", "sparse_optimizer.lr"})  # a lower lr to resume a run that diverged
RUN_FILE, CONFIG_FILE, LOCK_FILE, FITTED_FILE = "run.json", "config.json", ".lock", "fitted.json"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> `{"a.b.c": leaf}`; tuples become lists (as in JSON)."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out if tree or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: json.loads(json.dumps(tree))}


def config_differences(old: dict, new: dict, defaults: dict | None = None) -> dict[str, tuple[Any, Any]]:
    """`{key: (old value, new value)}` of two config dicts; keys that `old` lacks (written before
    they existed) take their value in `defaults`."""
    a, b = {**flatten(defaults or {}), **flatten(old)}, flatten(new)
    keys = set(a) | set(b)
    keys -= {k for k in keys if any(j.startswith(k + ".") for j in keys)}  # an empty section that one side fills
    missing = object()
    return {k: (a.get(k, missing), b.get(k, missing)) for k in sorted(keys) if a.get(k, missing) != b.get(k, missing)}


def data_identity(dataset) -> dict:
    """`{"name", "rows": {split: N}, "sha256"}` of an encoded `Dataset`: the digest covers the
    features' specs and every batch column of every split (bytes, dtype and shape); of a
    `ConversionLog`, its features, columns and click / conversion times (`rows`: {'clicks': N})."""
    h = hashlib.sha256(repr(dataset.features).encode())
    if not hasattr(dataset, "splits"):  # a conversion log (jaxrec.data.conversion_logs): one stream of clicks
        for key, col in sorted({**dataset.columns, "click_ts": dataset.click_ts, "pay_ts": dataset.pay_ts}.items()):
            col = np.ascontiguousarray(col)
            h.update(f"{key}/{col.dtype}/{col.shape}".encode())
            h.update(col.tobytes())
        return {"name": dataset.name, "rows": {"clicks": len(dataset)}, "sha256": h.hexdigest()}
    for split in sorted(dataset.splits):
        for key in sorted(dataset.batch_keys()):
            col = np.ascontiguousarray(dataset.splits[split][key])
            h.update(f"{split}/{key}/{col.dtype}/{col.shape}".encode())
            h.update(col.tobytes())
    return {"name": dataset.name, "rows": {s: int(dataset.num_rows(s)) for s in sorted(dataset.splits)},
            "sha256": h.hexdigest()}


def _show(value) -> str:
    return "(absent)" if not isinstance(value, (str, int, float, bool, list, dict, type(None))) else json.dumps(value)


def check_run(workdir: Path, config: ml_collections.ConfigDict, identity: dict, defaults: dict | None = None) -> bool:
    """Raises WorkdirConflict if `workdir` holds another run; returns whether it holds this one
    (False: a new workdir). Writes nothing."""
    config_path, run_path = workdir / CONFIG_FILE, workdir / RUN_FILE
    if not config_path.is_file():
        return False
    try:
        old = json.loads(config_path.read_text())
    except ValueError as e:
        raise WorkdirConflict(f"{config_path}: unreadable ({e}); move the workdir aside or pick another --workdir") from None
    diffs = config_differences(old, json.loads(config.to_json()), defaults)
    refused = {k: v for k, v in diffs.items() if k not in HARMLESS | ALLOWED}
    allowed = {k: v for k, v in diffs.items() if k in ALLOWED}
    lines = []
    if allowed and not config.train.get("allow_config_change", False):
        refused.update(allowed)
    if refused:
        lines += [f"  {k}: {_show(a)} in the workdir, {_show(b)} now" for k, (a, b) in refused.items()]
    if run_path.is_file():
        was = json.loads(run_path.read_text())
        if was.get("sha256") != identity["sha256"]:
            rows = ", ".join(f"{s} {was.get('rows', {}).get(s, '?')} -> {n}" for s, n in identity["rows"].items())
            lines.append(f"  data: other content than the run was trained on (rows: {rows}; sha256 "
                         f"{str(was.get('sha256'))[:12]} -> {identity['sha256'][:12]})")
    if lines:
        safe = sorted(k for k in refused if k in ALLOWED)
        hint = (f"; {', '.join(safe)} may change with --config.train.allow_config_change=true" if safe else "")
        raise WorkdirConflict(f"{workdir} holds another run; this one differs in:\n" + "\n".join(lines)
                              + f"\nUse another --workdir (or move this one aside){hint}.")
    return True


def record_run(workdir: Path, config: ml_collections.ConfigDict, identity: dict, fitted=None) -> None:
    """Writes `config.json`, `run.json` (the data `identity`) and, for loaders that fit on the
    train split, `fitted.json` (a `jaxrec.data.fitted.Fitted`, read back by `eval.py`), each atomically."""
    from jaxrec.data.fitted import save_fitted

    for name, text in ((CONFIG_FILE, config.to_json(indent=2)), (RUN_FILE, json.dumps(identity, indent=2))):
        tmp = workdir / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, workdir / name)
    if fitted is not None:
        save_fitted(fitted, workdir / FITTED_FILE)


def saved_fitted(workdir: Path):
    """The `Fitted` state a run saved (None for loaders that fit nothing, or older workdirs)."""
    from jaxrec.data.fitted import load_fitted

    path = Path(workdir) / FITTED_FILE
    return load_fitted(path) if path.is_file() else None


@contextlib.contextmanager
def lock(workdir: Path) -> Iterator[None]:
    """Holds `<workdir>/.lock` exclusively; raises WorkdirConflict naming the holder if another
    live process has it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    workdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise WorkdirConflict(f"{workdir} is in use by {holder}; wait for it to finish or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
