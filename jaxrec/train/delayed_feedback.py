"""Streaming CVR training under delayed feedback: pre-train, then train and test period by period.

The protocol of DEFUSE (Chen et al., WWW 2022; `jaxrec.data.delayed_feedback`): every
method starts from a network pre-trained on the first days (one per network `FAMILIES`,
shared by the methods that use it), then, for each period, trains one pass over the samples
its stream scheme ingested in that period (in ingestion order, batches of `batch_size`)
and predicts the clicks of the next period, scored against their true labels. One Adam
optimiser is created at the start of streaming and kept across periods, as in the released
code. ES-DFM, DEFER and DEFUSE read p_dp and p_rn from an auxiliary [tn, dp] network
pre-trained on the same days and frozen (`tn_dp_loss`).

Metrics (`stream_metrics`) pool the predictions of all test periods: AUC, PR-AUC (average
precision) and NLL; the released code instead averages per-hour values weighted by hour
size, reported here too as `*_hourly`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxrec.data.conversion_logs import ConversionLog
from jaxrec.data.dataset import LABELS
from jaxrec.data.delayed_feedback import Protocol, Stream, Windows, build_stream, pretrain_targets, true_labels
from jaxrec.errors import ConfigError
from jaxrec.losses import delayed_feedback as dfl
from jaxrec.models import MultiHeadDNN
from jaxrec.train import metrics as metrics_lib
from jaxrec.train.state import Optimizers, TrainState, init_state, make_train_step, variables


@dataclasses.dataclass(frozen=True)
class Family:
    """A network and its pre-training: heads, layers, and the loss on `pretrain_targets`."""

    heads: tuple[str, ...]
    pretrain_loss: Callable
    hidden: tuple[int, ...] = (256, 256, 128)
    tower: tuple[int, ...] = ()


FAMILIES = {
    "cvr": Family(("cvr",), dfl.cross_entropy_loss),
    "dfm": Family(("cvr", "delay"), dfl.dfm_loss),
    "bidefuse": Family(("in", "out"), dfl.in_out_window_loss, hidden=(256, 256), tower=(128,)),
    "aux": Family(("tn", "dp"), dfl.tn_dp_loss),
}


@dataclasses.dataclass(frozen=True)
class Method:
    """A delayed-feedback method: its streaming loss (None: no streaming, the pre-trained
    network as is), stream scheme, network family, whether it reads the frozen auxiliary
    network, and an observation window of its own (FNW / FNC assume w_o = 0)."""

    loss: Callable | None
    scheme: str = "duplicate"
    family: str = "cvr"
    needs_aux: bool = False
    observation_hours: float | None = None


METHODS = {
    "pretrain": Method(None),
    "vanilla": Method(dfl.cross_entropy_loss, "vanilla"),
    "oracle": Method(dfl.cross_entropy_loss, "oracle"),
    "fnw": Method(dfl.fnw_loss, observation_hours=0.0),
    "fnc": Method(dfl.cross_entropy_loss, observation_hours=0.0),
    "es_dfm": Method(dfl.es_dfm_loss, needs_aux=True),
    "defer": Method(dfl.defer_loss, "defer", needs_aux=True),
    "dfm": Method(dfl.dfm_loss, "dfm", family="dfm"),
    "defuse": Method(dfl.defuse_loss, needs_aux=True),
    "defuse_code": Method(functools.partial(dfl.defuse_loss, code_compat=True), needs_aux=True),
    "bidefuse": Method(dfl.bidefuse_loss, family="bidefuse"),
}


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings ([V code] defaults: Adam 1e-3, batch 1024, 5 pre-training epochs;
    the released scripts use 5e-4 for some methods, one rate for all here)."""

    lr: float = 1e-3
    batch_size: int = 1024
    pretrain_epochs: int = 5
    embed_dim: int = 8
    progress: bool = False  # a progress bar over the streamed periods

    def __post_init__(self):
        if not (self.lr > 0 and self.batch_size >= 1 and self.pretrain_epochs >= 0 and self.embed_dim >= 1):
            raise ConfigError(f"TrainOptions: need lr > 0, batch_size >= 1, pretrain_epochs >= 0, embed_dim >= 1; got {self}")


def make_model(log: ConversionLog, family: str, options: TrainOptions) -> MultiHeadDNN:
    """The network of `family` over the log's features."""
    f = FAMILIES[family]
    return MultiHeadDNN(log.features, heads=f.heads, embed_dim=options.embed_dim, hidden=f.hidden, tower=f.tower)


def _batches(log: ConversionLog, rows: np.ndarray, targets: Mapping[str, np.ndarray], size: int):
    """Yields batches of `size` rows (the last padded with weight 0): features + LABELS=targets."""
    for lo in range(0, len(rows), size):
        r = rows[lo:lo + size]
        pad = size - len(r)
        idx = np.pad(r, (0, pad))
        t = {k: np.pad(np.asarray(v[lo:lo + size], np.float32), (0, pad)) for k, v in targets.items()}
        t["weight"] = np.pad(np.ones(len(r), np.float32), (0, pad))
        yield {**{k: v[idx] for k, v in log.columns.items()}, LABELS: t}


def _optimizers(lr: float) -> Optimizers:
    return Optimizers(dense=optax.adam(lr), sparse=optax.adam(lr))


def _fresh_state(model, params, optimizers: Optimizers, example, seed: int) -> TrainState:
    """A new TrainState from `seed` (its parameters replaced by `params` unless None)."""
    state = init_state(model, optimizers, example, seed)
    if params is None:
        return state
    return state.replace(params=params, opt_state={"dense": optimizers.dense.init(params["dense"]),
                                                   "sparse": optimizers.sparse.init(params["sparse"])})


def _train_pass(step, state: TrainState | None, batches, start) -> TrainState | None:
    """One pass of `step` over `batches`; a None state is made from the first batch by
    `start(batch)` (so it is made only once there is data)."""
    for batch in batches:
        state, _ = step(state if state is not None else start(batch), batch)
    return state


def pretrain(log: ConversionLog, family: str, windows: Windows, protocol: Protocol, options: TrainOptions,
             seed: int) -> dict:
    """Trains the `family` network on the pre-training clicks (`pretrain_epochs` passes,
    shuffled once by `seed`, hindsight labels) and returns its TrainState params."""
    model = make_model(log, family, options)
    rows = protocol.pretrain_rows(log)
    if len(rows) == 0:
        raise ConfigError(f"protocol.pretrain_days={protocol.pretrain_days}: no clicks to pre-train on")
    rows = rows[np.random.default_rng([seed, 7]).permutation(len(rows))]
    targets = pretrain_targets(log, windows, rows)
    optimizers = _optimizers(options.lr)
    step = jax.jit(make_train_step(model, optimizers, FAMILIES[family].pretrain_loss))
    state = None
    for _ in range(options.pretrain_epochs):
        state = _train_pass(step, state, _batches(log, rows, targets, options.batch_size),
                            lambda b: _fresh_state(model, None, optimizers, b, seed))
    if state is None:  # pretrain_epochs=0: the initialisation itself
        state = _fresh_state(model, None, optimizers, next(_batches(log, rows, targets, options.batch_size)), seed)
    return state.params


def auxiliary_predictions(log: ConversionLog, params: dict, options: TrainOptions) -> dict[str, np.ndarray]:
    """The frozen auxiliary network on every click: {'p_dp', 'p_rn'} float32 `[N]`."""
    model = make_model(log, "aux", options)
    return predict(model, params, log, np.arange(len(log)), lambda o: {"p_dp": jax.nn.sigmoid(o["dp"]), "p_rn": jax.nn.sigmoid(o["tn"])})


def predict(model, params, log: ConversionLog, rows: np.ndarray, transform: Callable, size: int = 4096) -> dict | np.ndarray:
    """`transform(model outputs)` on the clicks `rows`, batched; numpy, `[len(rows)]` per entry."""
    fn = _predict_fn(model, transform)
    parts = []
    for lo in range(0, len(rows), size):
        r = rows[lo:lo + size]
        n = len(r)
        width = max(64, 1 << (n - 1).bit_length())  # a few padded shapes, a few compilations
        idx = np.pad(r, (0, width - n))
        parts.append(jax.tree.map(lambda a: np.asarray(a)[:n], fn(params, {k: v[idx] for k, v in log.columns.items()})))
    return jax.tree.map(lambda *a: np.concatenate(a), *parts)


@functools.lru_cache(maxsize=64)  # one compilation per (model, transform), e.g. per streamed method
def _predict_fn(model, transform):
    return jax.jit(lambda params, batch: transform(model.apply(variables(params), batch, train=False)))


def stream_targets(stream: Stream, aux: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The loss targets of a stream's samples, each `[M]` (`jaxrec.losses.delayed_feedback`)."""
    t = {"label": stream.label, "duplicate": stream.duplicate, "elapsed": stream.elapsed, "delay": stream.delay}
    if aux is not None:
        t.update({k: v[stream.rows] for k, v in aux.items()})
    return t


def run_stream(log: ConversionLog, method: str, params: dict, windows: Windows, protocol: Protocol,
               options: TrainOptions, seed: int, aux: Mapping[str, np.ndarray] | None = None,
               observed_at: str = "window_end") -> dict[str, np.ndarray]:
    """Streams `method` from the pre-trained `params` (module docstring).

    Returns:
      {'prob': predicted CVR `[T]`, 'label': true label `[T]`, 'period': test period index `[T]`}
      over the test clicks of every period (T clicks in all).
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r}: expected one of {sorted(METHODS)}")
    m = METHODS[method]
    if m.needs_aux and aux is None:
        raise ConfigError(f"method {method!r} needs the auxiliary network's predictions (aux=...)")
    heads = {f"head_{h}" for h in FAMILIES[m.family].heads}
    if not heads <= set(params.get("dense", {})):
        raise ConfigError(f"method {method!r} streams a {m.family!r} network (heads {FAMILIES[m.family].heads}); "
                          f"pass the params of pretrain(log, {m.family!r}, ...)")
    model = make_model(log, m.family, options)
    prob = functools.partial(dfl.probability, method=method)
    labels = true_labels(log, windows)
    out = {"prob": [], "label": [], "period": []}
    if m.loss is not None:
        w = windows if m.observation_hours is None else dataclasses.replace(windows, observation_hours=m.observation_hours)
        stream = build_stream(log, w, m.scheme, observed_at, protocol.period_hours)
        optimizers = _optimizers(options.lr)
        step = jax.jit(make_train_step(model, optimizers, m.loss))
        state = None
    for h, (start, end, test_end) in enumerate(tqdm(list(protocol.periods()), desc=method, disable=not options.progress)):
        if m.loss is not None:
            part = stream.between(start, end)
            state = _train_pass(step, state, _batches(log, part.rows, stream_targets(part, aux), options.batch_size),
                                lambda b: _fresh_state(model, params, optimizers, b, seed))
            params = state.params if state is not None else params
        rows = protocol.test_rows(log, end, test_end)
        if len(rows):
            out["prob"].append(predict(model, params, log, rows, prob))
            out["label"].append(labels[rows])
            out["period"].append(np.full(len(rows), h))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def stream_metrics(result: Mapping[str, np.ndarray]) -> dict[str, float]:
    """AUC, PR-AUC (average precision) and NLL of `run_stream`'s predictions, pooled over all
    test periods, and the same averaged per period weighted by its size (`*_hourly`; periods
    with one class only are left out of the AUCs)."""
    p, y, period = (np.asarray(result[k]) for k in ("prob", "label", "period"))
    logits = np.log(p) - np.log1p(-p)
    out = {"auc": metrics_lib.auc(y, p), "pr_auc": metrics_lib.average_precision(y, p),
           "nll": metrics_lib.logloss(y, logits), "count": int(len(y)), "positive_rate": float(np.mean(y)),
           "mean_prediction": float(np.mean(p))}
    hourly = {"auc_hourly": [], "pr_auc_hourly": [], "nll_hourly": []}
    sizes = {k: [] for k in hourly}
    for h in np.unique(period):
        s = period == h
        ys, ps = y[s], p[s]
        hourly["nll_hourly"].append(metrics_lib.logloss(ys, logits[s]))
        sizes["nll_hourly"].append(s.sum())
        if 0 < ys.sum() < len(ys):
            hourly["auc_hourly"].append(metrics_lib.auc(ys, ps))
            hourly["pr_auc_hourly"].append(metrics_lib.average_precision(ys, ps))
            sizes["auc_hourly"].append(s.sum())
            sizes["pr_auc_hourly"].append(s.sum())
    for k, v in hourly.items():
        out[k] = float(np.average(v, weights=sizes[k])) if v else float("nan")
    return out


def relative_improvement(m: float, m_pretrain: float, m_oracle: float) -> float:
    """RI = (m - m_pretrain) / (m_oracle - m_pretrain): 0 = no better than not streaming,
    1 = as good as knowing the labels at once (same formula for NLL, where lower is better)."""
    return float((m - m_pretrain) / (m_oracle - m_pretrain))


# ---- the protocol through train.py: one resumable run of one method -----------------------------

# `task.*` keys of task.name='delayed_feedback' (configs/defuse_movielens.py); lr, batch size,
# embedding width and seed come from optimizer.lr, train.batch_size, model.embed_dim, seed.
STREAM_DEFAULTS = dict(
    method="defuse",              # METHODS: pretrain, oracle, vanilla, fnw, fnc, es_dfm, defer, dfm, defuse, defuse_code, bidefuse
    observation_hours=1.0,        # Windows: w_o
    attribution_days=30.0,        #          w_a
    pretrain_days=30.0,           # Protocol: pre-train on the clicks before this day,
    end_day=60.0,                 #           stream periods from there to this day,
    period_hours=1.0,             #           each this long, tested on the next period's clicks
    pretrain_epochs=5,
    observed_at="window_end",     # build_stream: when a sample's observed label is read
    checkpoint_every_periods=24,  # a checkpoint after every pre-training epoch and every this many periods
)


@dataclasses.dataclass(frozen=True)
class StreamRun:
    """One method's protocol over one log, as a config fixes it. Its work is a list of units
    (`units`): pre-training epochs of the method's network, of the auxiliary network if the
    method reads it, then the periods; each unit is a pure function of the state before it, so
    a run resumed from the checkpoint after any unit ends exactly as an uninterrupted one."""

    log: ConversionLog
    method: str
    windows: Windows
    protocol: Protocol
    options: TrainOptions
    seed: int
    observed_at: str = "window_end"

    @property
    def spec(self) -> Method:
        return METHODS[self.method]

    def units(self) -> list[tuple[str, int]]:
        """`[(phase, index)]`: ('main', epoch) ..., ('aux', epoch) ..., ('period', h) ..."""
        e = self.options.pretrain_epochs
        return ([("main", i) for i in range(e)] + [("aux", i) for i in range(e if self.spec.needs_aux else 0)]
                + [("period", h) for h in range(self.protocol.num_periods)])

    def test_rows(self) -> list[np.ndarray]:
        """The clicks each period is tested on."""
        return [self.protocol.test_rows(self.log, end, test_end) for _, end, test_end in self.protocol.periods()]


def stream_run(config) -> StreamRun:
    """The `StreamRun` of a config with task.name='delayed_feedback' (ConfigError naming bad keys)."""
    from jaxrec.data.conversion_logs import load_conversion_log

    t = {**STREAM_DEFAULTS, **{k: v for k, v in config.task.items() if k != "name"}}
    if t["method"] not in METHODS:
        raise ConfigError(f"task.method={t['method']!r}: expected one of {sorted(METHODS)}")
    extra = sorted(set(config.model.keys()) - {"name", "embed_dim"})
    if config.model.name != "multi_head_dnn" or extra:
        raise ConfigError("task.name='delayed_feedback' trains the methods' own networks (FAMILIES): set model.name="
                          "'multi_head_dnn' and at most model.embed_dim" + (f"; not {['model.' + k for k in extra]}" if extra else ""))
    options = TrainOptions(lr=float(config.optimizer.lr), batch_size=int(config.train.batch_size),
                           pretrain_epochs=int(t["pretrain_epochs"]), embed_dim=int(config.model.get("embed_dim", 8)))
    log = load_conversion_log(config.dataset.name, **{k: v for k, v in config.dataset.items() if k != "name"})
    return StreamRun(log, t["method"], Windows(float(t["observation_hours"]), float(t["attribution_days"])),
                     Protocol(float(t["pretrain_days"]), float(t["end_day"]), float(t["period_hours"])), options,
                     int(config.seed), str(t["observed_at"]))


class StreamState(NamedTuple):
    """What a stream checkpoint holds: the method's network (pre-training, then streaming), the
    auxiliary network (or an empty dict) and the test predictions so far (`prob [T]`, NaN not yet)."""

    main: TrainState
    aux: Any
    prob: np.ndarray


class StreamStepper:
    """Runs the units of a `StreamRun` (see there)."""

    def __init__(self, run: StreamRun):
        self.run, m = run, run.spec
        o = run.options
        self.optimizers = _optimizers(o.lr)
        self.main_model = make_model(run.log, m.family, o)
        self.aux_model = make_model(run.log, "aux", o) if m.needs_aux else None
        self.pre_rows = {f: self._pretrain_rows(f) for f in ([m.family] + (["aux"] if m.needs_aux else []))}
        self.steps = {f: jax.jit(make_train_step(make_model(run.log, f, o), self.optimizers, FAMILIES[f].pretrain_loss))
                      for f in self.pre_rows}
        self.periods = list(run.protocol.periods())  # (start, end, test end) per period
        self.tests = run.test_rows()
        self.offsets = np.concatenate([[0], np.cumsum([len(r) for r in self.tests])]).astype(int)
        self.stream, self.stream_step, self._aux = None, None, None
        if m.loss is not None:
            w = run.windows if m.observation_hours is None else dataclasses.replace(run.windows, observation_hours=m.observation_hours)
            self.stream = build_stream(run.log, w, m.scheme, run.observed_at, run.protocol.period_hours)
            self.stream_step = jax.jit(make_train_step(self.main_model, self.optimizers, m.loss))

    def _pretrain_rows(self, family: str) -> tuple[np.ndarray, dict]:
        rows = self.run.protocol.pretrain_rows(self.run.log)
        if len(rows) == 0:
            raise ConfigError(f"task.pretrain_days={self.run.protocol.pretrain_days}: no clicks to pre-train on")
        rows = rows[np.random.default_rng([self.run.seed, 7]).permutation(len(rows))]
        return rows, pretrain_targets(self.run.log, self.run.windows, rows)

    def _fresh(self, family: str, params=None) -> TrainState:
        rows, targets = self.pre_rows.get(family, self.pre_rows[self.run.spec.family])
        example = next(_batches(self.run.log, rows, targets, self.run.options.batch_size))
        model = self.aux_model if family == "aux" else self.main_model
        return _fresh_state(model, params, self.optimizers, example, self.run.seed)

    def init(self) -> StreamState:
        """The state before the first unit."""
        aux = self._fresh("aux") if self.run.spec.needs_aux else {}
        return StreamState(self._fresh(self.run.spec.family), aux, np.full(int(self.offsets[-1]), np.nan, np.float32))

    def aux_predictions(self, state: StreamState) -> dict | None:
        if not self.run.spec.needs_aux:
            return None
        if self._aux is None:  # the auxiliary network is frozen once pre-trained: predict once
            self._aux = auxiliary_predictions(self.run.log, state.aux.params, self.run.options)
        return self._aux

    def __call__(self, state: StreamState, unit: tuple[str, int]) -> StreamState:
        """The state after `unit`."""
        phase, i = unit
        o, log = self.run.options, self.run.log
        if phase in ("main", "aux"):
            family = self.run.spec.family if phase == "main" else "aux"
            rows, targets = self.pre_rows[family]
            trained = _train_pass(self.steps[family], getattr(state, phase), _batches(log, rows, targets, o.batch_size), None)
            state = state._replace(**{phase: trained})
            if phase == "main" and i == o.pretrain_epochs - 1:
                state = state._replace(main=self._fresh(self.run.spec.family, state.main.params))  # streaming's own Adam
            return state
        if i == 0 and o.pretrain_epochs == 0:
            state = state._replace(main=self._fresh(self.run.spec.family, state.main.params))
        start, end, _ = self.periods[i]
        main = state.main
        if self.stream is not None:
            part = self.stream.between(start, end)
            main = _train_pass(self.stream_step, main, _batches(log, part.rows, stream_targets(part, self.aux_predictions(state)),
                                                               o.batch_size), None)
        rows, prob = self.tests[i], np.array(state.prob)
        if len(rows):
            prob[self.offsets[i]:self.offsets[i + 1]] = predict(self.main_model, main.params, log, rows,
                                                               functools.partial(dfl.probability, method=self.run.method))
        return StreamState(main, state.aux, prob)

    def result(self, state: StreamState) -> dict[str, np.ndarray]:
        """`run_stream`'s result from the final state's predictions."""
        labels = true_labels(self.run.log, self.run.windows)
        period = np.concatenate([np.full(len(r), h) for h, r in enumerate(self.tests)]) if self.tests else np.zeros(0)
        rows = np.concatenate(self.tests) if self.tests else np.zeros(0, int)
        return {"prob": np.asarray(state.prob), "label": labels[rows], "period": period}
