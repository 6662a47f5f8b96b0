"""The training loop: train, evaluate, early-stop, checkpoint and resume.

`train_and_evaluate(config, workdir)` runs an experiment end to end and writes
`<workdir>/metrics.json`; rerun on the same workdir it resumes from the latest checkpoint
(mid-epoch included) and finishes with the same result as an uninterrupted run, because
batches are a pure function of (seed, epoch, step) and checkpoints fall on chunk edges.

Layout of a workdir: `config.json`, `checkpoints/`, `best/`, `tb/` (TensorBoard scalars),
`metrics.json`, `profile/` (with `profile=True`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from jaxrec.data import batching
from jaxrec.data.dataset import Dataset
from jaxrec.distributed import runtime
from jaxrec.errors import ConfigError, TrainingDiverged
from jaxrec.train import config as config_lib
from jaxrec.train import experiment
from jaxrec.train import workdir as workdir_lib
from jaxrec.train.checkpointing import Checkpointer
from jaxrec.train.prefetch import device_prefetch

log = logging.getLogger("jaxrec")


def _better(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None or math.isnan(best):  # the first epoch is the best so far, whatever its value
        return best is None or not math.isnan(value)
    return value > best + min_delta if mode == "max" else value < best - min_delta


class _Summaries:
    """TensorBoard scalars (tensorboardX) of finite numeric values."""

    def __init__(self, logdir: Path):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(logdir)) if runtime.is_main() else None  # one writer per run

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _add_counts(counts: dict, out: dict) -> None:
    """Folds a train call's per-step metrics `{name: [K]}` (all but the loss) into `counts`:
    counts are summed, gauges (`.../occupancy`, `aux_loss`) keep their last value."""
    for key, v in out.items():
        if key == "loss":
            continue
        if key.endswith("occupancy") or key == "aux_loss":
            counts[key] = float(np.asarray(v).reshape(-1)[-1])
        else:
            counts[key] = counts.get(key, 0) + int(np.sum(v))


def _log_counts(epoch: int, counts: dict) -> None:
    for key, v in counts.items():
        if key.startswith("overflow_ids/") and v:
            log.warning("epoch %d: %s = %d (ids beyond the feature's batch_capacity were dropped)", epoch, key, v)
    tables = sorted({k.split("/")[1] for k in counts if k.startswith("vocab/")})
    for t in tables:
        c = {k.rsplit("/", 1)[1]: v for k, v in counts.items() if k.startswith(f"vocab/{t}/")}
        log.info("epoch %d: vocab %s: occupancy %.3f, admitted %d, evicted %d, rejected %d, dropped %d, unknown %d",
                 epoch, t, c.get("occupancy", 0.0), *(c.get(k, 0) for k in ("admitted", "evicted", "rejected", "dropped", "unknown")))


def divergence(losses: np.ndarray, recent: np.ndarray, factor: float) -> tuple[int, str] | None:
    """`(index, why)` of the first step loss `[K]` that is not finite, or (with `factor` > 0) above
    `factor` x the median of the losses before it (`recent`, the last steps of the run, and the
    chunk's own, the last 1,000; from the second step on, so that a run that blows up in its first
    steps is caught too); None if none is."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad):
        return int(bad[0]), "is not finite"
    if factor <= 0:
        return None
    history = np.concatenate([recent, losses])
    for i in range(len(losses)):
        seen = history[:len(recent) + i][-1000:]
        if len(seen):
            ref = float(np.median(seen))
            if ref > 0 and losses[i] > factor * ref:
                return i, f"is over {factor:g} x the running median loss {ref:.4g} (train.divergence_factor)"
    return None


def _diverged(losses: np.ndarray, found: tuple[int, str], first: int, epoch: int, latest: Checkpointer) -> TrainingDiverged:
    bad, why = found
    saved = latest.latest_step()
    where = (f"The last good checkpoint is kept: step {saved} in {latest.directory}; rerun to resume from it "
             f"(e.g. with a lower optimizer.lr and --config.train.allow_config_change=true)" if saved is not None else
             "No checkpoint had been written yet; lower optimizer.lr or check the data")
    return TrainingDiverged(f"loss {losses[bad]:.6g} at step {first + bad} (epoch {epoch}) {why}; training stopped. {where}")


def new_meta() -> dict:
    """The loop's bookkeeping at the start of a run (saved beside each checkpoint)."""
    return {"history": [], "best_value": None, "best_epoch": None, "bad_epochs": 0, "stopped": False, "counters": {}}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, profile: bool = False,
                       dataset: Dataset | None = None) -> dict:
    """Trains with early stopping, then evaluates the best epoch; returns the metrics dict.

    Resumes automatically from `<workdir>/checkpoints`. Writes `<workdir>/metrics.json`:
    {'valid': {...}, 'test': {...}, 'best_epoch', 'epochs_run', 'stopped_early',
    'train_examples_per_sec' (median over epochs after the first, compile excluded), 'history',
    'num_params': {'dense': n, 'sparse': n (embedding rows as stored)}}.
    """
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir}: exists and is not a directory")
    workdir.mkdir(parents=True, exist_ok=True)
    with workdir_lib.lock(workdir) if runtime.is_main() else contextlib.nullcontext():
        if config.task.name == "delayed_feedback":
            return _train_stream(config, workdir)
        return _train_and_evaluate(config, workdir, profile, dataset)


@dataclasses.dataclass
class _Run:
    """One training run's moving parts: the experiment, its workdir's checkpointers, the state and
    the loop's bookkeeping (`meta`, saved beside each checkpoint)."""

    exp: experiment.Experiment
    workdir: Path
    latest: Checkpointer
    best: Checkpointer
    state: Any
    meta: dict
    logical_params: Any  # shapes of the params: the restore target of best/
    num_params: dict
    summaries: _Summaries

    def close(self) -> None:
        self.summaries.close()
        self.latest.close()
        self.best.close()


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: Path, profile: bool, dataset: Dataset | None) -> dict:
    exp = experiment.build(config, dataset)
    _claim(exp, workdir)
    run = _open(exp, workdir)
    try:
        step = _train(run, profile)
        return _finish(run, step)
    finally:
        run.close()


def _claim(exp: experiment.Experiment, workdir: Path) -> None:
    """Refuses a workdir that holds another run (config or data); else records this one in it."""
    config = exp.config
    if config.train.get("init_from") and not (workdir / "checkpoints").is_dir():
        experiment.init_from_dir(config.train.init_from)  # a bad warm start is refused before the workdir is claimed
    identity = workdir_lib.data_identity(exp.dataset)
    if workdir_lib.check_run(workdir, config, identity, config_lib.default_config().to_dict()):
        log.info("%s holds this run (same config and data): resuming", workdir)
    if runtime.is_main():
        workdir_lib.record_run(workdir, config, identity, exp.dataset.fitted)
    log.info("%s", exp.dataset.summary())


def _open(exp: experiment.Experiment, workdir: Path) -> _Run:
    """The run's state: resumed from the latest checkpoint, else warm-started or initialised."""
    t = exp.config.train
    latest = exp.checkpointer(workdir / "checkpoints", keep=int(t.keep_checkpoints))
    best = exp.checkpointer(workdir / "best", keep=1)
    state = exp.init_state(place=False)
    num_params = {side: sum(int(x.size) for x in jax.tree.leaves(state.params[side])) for side in ("dense", "sparse")}
    log.info("parameters: %s dense, %s in embedding tables", f"{num_params['dense']:,}", f"{num_params['sparse']:,}")
    meta = new_meta()
    if latest.latest_step() is not None:
        state, meta = latest.restore(state, fallback=True)
        log.info("resumed from %s at step %d", latest.directory, int(state.step))
    elif t.get("init_from"):
        state = state.replace(params=experiment.warm_start(exp, state.params, t.init_from))
    logical_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state.params)
    return _Run(exp, workdir, latest, best, exp.place(state), meta, logical_params, num_params, _Summaries(workdir / "tb"))


def _train(run: _Run, profile: bool) -> int:
    """Runs the remaining steps (one compiled call of K steps at a time), checkpointing mid-epoch
    when asked and validating at each epoch end; returns the last step. Stops early, or raises
    TrainingDiverged on a non-finite or exploding loss."""
    exp, t = run.exp, run.exp.config.train
    bs, spe, k = int(t.batch_size), exp.steps_per_epoch, exp.steps_per_call
    step = last_saved = int(run.state.step)
    total_steps = spe * int(t.num_epochs)
    bar = tqdm(total=total_steps, initial=step, unit="step", disable=not (t.progress_bar and runtime.is_main()),
               dynamic_ncols=True)
    tracer = _Tracer(run.workdir / "profile", profile)
    stream = device_prefetch(batching.train_stream(exp.dataset.columns("train"), bs, k, int(exp.config.seed), step, total_steps),
                             sharding=exp.batch_sharding)
    clock = (time.perf_counter(), step)  # (start time, first step) of the epoch being timed
    counts = dict(run.meta.get("epoch_counts", {}))
    recent = np.zeros(0, np.float32)  # the last step losses, for divergence detection
    with logging_redirect_tqdm():  # log lines print above the progress bar
        try:
            for first, chunk in ([] if run.meta["stopped"] else stream):
                epoch = first // spe
                tracer.before(first > 0 or total_steps <= k)
                new_state, out = exp.train_steps(run.state, chunk)
                losses = np.asarray(out["loss"])  # waits for the chunk: one sync per call
                _add_counts(counts, out)  # e.g. overflow_ids/<feature>, vocab/<table>/admitted
                tracer.after()
                found = divergence(losses, recent, float(t.divergence_factor))
                if found is not None:
                    raise _diverged(losses, found, first, epoch, run.latest)
                recent = np.concatenate([recent, losses])[-1000:]
                run.state, step = new_state, first + len(losses)
                bar.update(len(losses))
                bar.set_postfix(epoch=epoch, loss=f"{losses.mean():.4f}")
                run.summaries.scalars("train", {"loss": float(losses.mean())}, step)
                if step % spe:  # mid-epoch
                    if int(t.checkpoint_every_steps) and step - last_saved >= int(t.checkpoint_every_steps):
                        run.meta["epoch_counts"] = counts  # so a resumed epoch keeps its counts
                        run.latest.save(step, run.state, run.meta)
                        last_saved = step
                    continue
                seconds = time.perf_counter() - clock[0]
                ex_s = spe * bs / seconds if clock[1] == epoch * spe else None  # a resumed partial epoch is not timed
                bar.set_postfix(epoch=epoch, loss=f"{losses.mean():.4f}", ex_per_s=f"{ex_s:,.0f}" if ex_s else "-")
                _end_epoch(run, epoch, step, counts, ex_s)
                last_saved = step
                if run.meta["stopped"]:
                    break
                clock, counts = (time.perf_counter(), step), {}
        finally:
            stream.close()
            bar.close()
            tracer.close()
    return step


def _end_epoch(run: _Run, epoch: int, step: int, counts: dict, ex_s: float | None) -> None:
    """Epoch end: validate, early-stopping bookkeeping (best/ keeps the best epoch's params), log,
    checkpoint."""
    es, meta = run.exp.config.early_stopping, run.meta
    valid = experiment.evaluate(run.exp, run.state.params, "valid")
    value = valid[es.metric]
    if _better(value, meta["best_value"], es.mode, float(es.min_delta)):
        meta.update(best_value=value, best_epoch=epoch, bad_epochs=0)
        run.best.save(epoch, run.state.params, {"epoch": epoch, "valid": valid})
    else:
        meta["bad_epochs"] += 1
    meta["history"].append({"epoch": epoch, "valid": valid, "train_examples_per_sec": ex_s, "counters": counts})
    meta["epoch_counts"] = {}
    _add_counts(meta["counters"], {k: [v] for k, v in counts.items()})
    _log_counts(epoch, counts)
    run.summaries.scalars("train", {**counts, **({"examples_per_sec": ex_s} if ex_s else {})}, step)
    run.summaries.scalars("valid", valid, step)
    meta["stopped"] = bool(int(es.patience) and meta["bad_epochs"] >= int(es.patience))
    run.latest.save(step, run.state, meta)
    log.info("epoch %d: valid %s=%.5f (best %.5f at epoch %s)%s", epoch, es.metric, value,
             meta["best_value"], meta["best_epoch"], "; early stop" if meta["stopped"] else "")


def _finish(run: _Run, step: int) -> dict:
    """Evaluates the best epoch's params on `eval_splits`; writes and returns metrics.json's dict."""
    exp, config, meta = run.exp, run.exp.config, run.meta
    best_params, best_meta = run.best.restore(run.logical_params)
    best_params = exp.place(best_params)
    result = {split: experiment.evaluate(exp, best_params, split) for split in config.eval_splits}
    speeds = [h["train_examples_per_sec"] for h in meta["history"][1:] if h["train_examples_per_sec"]]
    result.update(
        best_epoch=best_meta["epoch"], epochs_run=len(meta["history"]), stopped_early=bool(meta["stopped"]),
        train_examples_per_sec=float(np.median(speeds)) if speeds else None, steps=step, num_params=run.num_params,
        train_counters=meta.get("counters", {}), history=meta["history"], model=config.model.name,
        task=exp.task.name, dataset=exp.dataset.name, seed=int(config.seed),
    )
    if exp.amtl:
        result["amtl"] = experiment.export_amtl_dims(exp, best_params, run.workdir)
    if hasattr(exp.model, "report"):  # a model's own summary of what it learned (e.g. FSCD's field selection)
        result["model_report"] = exp.model.report(runtime.to_host(best_params["dense"]))
        log.info("model report: %s", result["model_report"])
    if runtime.is_main():
        (run.workdir / "metrics.json").write_text(json.dumps(result, indent=2))
    for split in config.eval_splits:
        run.summaries.scalars(f"final_{split}", result[split], step)
    return result


class _Tracer:
    """`profile=True`: one JAX profiler trace of the first compiled call after compilation (the
    second call, or the only one) into `directory`."""

    def __init__(self, directory: Path, enabled: bool):
        self.directory, self.pending, self.active = directory, enabled, False

    def before(self, compiled: bool) -> None:
        if self.pending and compiled:
            jax.profiler.start_trace(str(self.directory))
            self.pending, self.active = False, True

    def after(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False

    close = after


def _train_stream(config: ml_collections.ConfigDict, workdir: Path) -> dict:
    """The delayed-feedback protocol of `config.task` (`jaxrec.train.delayed_feedback.StreamRun`):
    its units (pre-training epochs, then periods) one by one, a checkpoint after every
    pre-training epoch and every `task.checkpoint_every_periods` periods, resumed from the latest;
    then the pooled test metrics of the periods' predictions (`stream_metrics`) into metrics.json."""
    from jaxrec.train import delayed_feedback as tdf

    config_lib.validate(config)
    run = tdf.stream_run(config)
    identity = workdir_lib.data_identity(run.log)
    if workdir_lib.check_run(workdir, config, identity, config_lib.default_config().to_dict()):
        log.info("%s holds this run (same config and data): resuming", workdir)
    if runtime.is_main():
        workdir_lib.record_run(workdir, config, identity)
    stepper, units = tdf.StreamStepper(run), run.units()
    latest = Checkpointer(workdir / "checkpoints", keep=int(config.train.keep_checkpoints))
    state, done = stepper.init(), 0
    if latest.latest_step() is not None:
        state, meta = latest.restore(state, fallback=True)
        done = int(meta["units"])
        log.info("resumed from %s after unit %d of %d", latest.directory, done, len(units))
    every = int(config.task.get("checkpoint_every_periods", tdf.STREAM_DEFAULTS["checkpoint_every_periods"]))
    bar = tqdm(total=len(units), initial=done, unit="unit", disable=not (config.train.progress_bar and runtime.is_main()),
               dynamic_ncols=True, desc=run.method)
    try:
        for u in range(done, len(units)):
            phase, i = units[u]
            state = stepper(state, units[u])
            bar.update(1)
            bar.set_postfix(phase=phase, index=i)
            if phase != "period" or u == len(units) - 1 or (i + 1) % every == 0:
                latest.save(u + 1, state, {"units": u + 1})
    finally:
        bar.close()
        latest.close()
    result = {"test": tdf.stream_metrics(stepper.result(state)), "task": "delayed_feedback", "method": run.method,
              "units": len(units), "dataset": run.log.name, "seed": run.seed}
    log.info("test (pooled over %d periods): %s", run.protocol.num_periods,
             ", ".join(f"{k} {result['test'][k]:.4f}" for k in ("auc", "pr_auc", "nll")))
    if runtime.is_main():
        (workdir / "metrics.json").write_text(json.dumps(result, indent=2))
    summaries = _Summaries(workdir / "tb")
    summaries.scalars("final_test", result["test"], len(units))
    summaries.close()
    return result
