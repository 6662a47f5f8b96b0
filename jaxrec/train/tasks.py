"""Tasks: what differs between model families when they train through the one loop.

A task owns how labels are read and checked, the loss, how per-task gradients become one
(multi-task), the metrics of a split and the direction each improves in. Everything else
(the loop, checkpoints and resume, early stopping on validation, TensorBoard, the progress
bar, profiling, the mesh) is shared (`jaxrec.train.loop`).

  binary     labels `[N]` in {0, 1}, outputs logits `[B]`; loss mean sigmoid cross-entropy;
             metrics AUC, logloss, GAUC (with a group key) and counts.
  multitask  labels `[N, T]`, outputs `[B, T]` (a logit per binary task, a value per
             regression task); losses `[T]` (BCE or squared error per task, mean over the
             batch); the per-task gradients of the shared parameters `G [T, P]` are combined
             by `optimizer.multitask` (linear, pcgrad, mgda, cagrad, gradops with
             `optimizer.alpha`; `jaxrec.optim.multitask`); metrics `<task>/<metric>`.
  lm         labels `[N, T]` int32 next-token ids (`jaxrec.data.text`: labels = tokens[:, 1:]; a
             label < 0 is skipped, e.g. a prompt's tokens in `jaxrec.data.bidwords`' SFT rows),
             outputs logits `[B, T, V]`; loss the mean next-token cross-entropy over the kept labels
             -1/|K| sum_{(b,t) in K} log softmax(z_{b,t})[y_{b,t}]; metrics `nll` (nats per token),
             `perplexity` = exp(nll), `bits_per_byte` = sum(-log p) / (ln 2 * bytes of the targets)
             (with the dataset's `token_bytes`), `count` (target tokens).
  next_item  labels `[N]` int32 item ids in 1..V-1 (`jaxrec.data.sequential`; id 0 padding),
             outputs scores `[B, V]` over every item id (column 0 ignored); loss the softmax
             cross-entropy over all items of the target, -1/B sum_b log softmax(z_b[1:])[y_b - 1]
             (RecBole's SASRec 'CE': one target per prefix example, the last position);
             metrics HR@{1,5,10}, NDCG@{5,10}, MRR of the target's full-catalogue rank
             (`jaxrec.train.metrics.ranking_metrics`: ties pessimistic, the user's history not
             excluded, as RecBole); early stopping usually on `ndcg@10`.
  generative the same data and metrics as 'next_item', for the generative recommenders ('tiger',
             'nezha'): outputs `{'logits' [B, L, C], 'targets' [B, L]}` (the target item's
             semantic-ID tokens or codes, `jaxrec.models.generative.recommender`); loss the sum over
             the L levels of the cross-entropy, mean over the batch,
             -1/B sum_b sum_i log softmax(z_{b,i})[t_{b,i}]. Evaluation DECODES: beam search of
             width `task.beam_width` (constrained to real items; NEZHA: `task.top_k` codes per beam
             and level, 0 = all) gives each row's ranked items (`jaxrec.generate.nezha.recommend`);
             the target's rank is its beam position, a target outside the beams is a miss
             (`MISS`: counts 0 in HR@K / NDCG@K, K <= W, and ~0 in MRR, which is thus MRR@W).

Prediction hooks: a task may define `eval_forward(model, variables, batch) -> [B, ...]`, run in
place of the model's forward in the jitted predict ('generative': the decoding), and `eval_outputs(outputs, batch) -> [B, ...]`, applied to the
model's outputs inside the jitted predict (`jaxrec.train.state.make_predict`), so what comes back
to the host per row is what `metrics` reads: 'lm' keeps log p(target) `[B, T]` instead of the
logits `[B, T, V]`, which a whole split could not hold; 'next_item' keeps the target's rank `[B]`
(read from `batch['target']`), not the scores `[B, V]`. Without it the outputs come back as they are.

The third task, 'delayed_feedback' (the DEFUSE streaming protocol over a conversion log), is a
schedule of its own (`jaxrec.train.delayed_feedback.StreamRun`) that shares the workdir, checkpoints
and resume, progress bar and TensorBoard of the loop.

Config: `task.name` ('binary' | 'multitask' | 'lm' | 'next_item' | 'generative' | 'delayed_feedback', keys in
`TASK_OPTIONS`); for multi-task, `task.names` (default: the
dataset's label names) and `task.kinds` ('binary' | 'regression' per task; default: 'binary'
for a column whose train labels are all 0 or 1, else 'regression'). Early stopping names a
metric of the task, e.g. `early_stopping.metric='like/auc'`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxrec.data.dataset import LABELS, Dataset
from jaxrec.data.text import TOKEN_BYTES, TOKENS
from jaxrec.errors import ConfigError, DataError
from jaxrec.losses import bce_loss, squared_error
from jaxrec.optim import multitask as mt
from jaxrec.train import metrics as metrics_lib
from jaxrec.train.delayed_feedback import STREAM_DEFAULTS

# Each task's `task.*` keys and their defaults (besides `name`).
TASK_OPTIONS = {"binary": {}, "multitask": {"names": (), "kinds": ()}, "delayed_feedback": STREAM_DEFAULTS, "lm": {},
                "next_item": {}, "generative": {"beam_width": 20, "top_k": 0}}

# Metrics early stopping can follow and the direction each improves in.
METRIC_MODES = {"auc": "max", "gauc": "max", "logloss": "min", "mse": "min",
                "perplexity": "min", "nll": "min", "bits_per_byte": "min",
                **{m: "max" for m in metrics_lib.RANKING_METRICS}}
BINARY_METRICS = ("auc", "gauc", "logloss")
TASK_KINDS = ("binary", "regression")
COMBINERS = tuple(mt.COMBINERS)


def _suggest(value: str, valid: Sequence[str]) -> str:
    hint = difflib.get_close_matches(value, list(valid), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


@dataclasses.dataclass(frozen=True)
class BinaryTask:
    """Binary CTR: one logit per row (module docstring)."""

    name: str = "binary"
    combine: Callable | None = None  # one loss: its gradient is the update direction

    @property
    def metric_names(self) -> tuple[str, ...]:
        return BINARY_METRICS

    def loss(self, outputs: jax.Array, labels: jax.Array) -> jax.Array:
        """Mean sigmoid cross-entropy of logits `[B]` against labels `[B]`."""
        return bce_loss(outputs, labels)

    def metrics(self, labels: np.ndarray, outputs: np.ndarray, groups: np.ndarray | None) -> dict[str, float]:
        """Exact metrics of a whole split (`jaxrec.train.metrics.binary_metrics`)."""
        return metrics_lib.binary_metrics(labels, outputs, groups)

    def check(self, dataset: Dataset, metric: str) -> None:
        """Labels are `[N]`; the valid split can rank: it has both classes."""
        labels = dataset.splits["train"][LABELS]
        if labels.ndim != 1:
            raise ConfigError(f"dataset {dataset.name!r} has {labels.shape[1]} label columns: task.name='binary' reads one; "
                              f"set task.name='multitask' (and a multi-task model), or keep one label")
        valid = _valid_labels(dataset)
        if metric == "gauc" and not dataset.group_key:
            raise ConfigError(f"early_stopping.metric='gauc' needs a group key, which dataset {dataset.name!r} has none of "
                              f"(dataset.group_key); use 'auc' or 'logloss'")
        if metric in ("auc", "gauc") and valid.min() == valid.max():
            raise DataError(f"the valid split of {dataset.name!r} has only label {valid[0]:g} ({len(valid):,} rows): "
                            f"early_stopping.metric={metric!r} is undefined on it; change the split or the data")


@dataclasses.dataclass(frozen=True)
class MultiTask:
    """T tasks over one model with outputs `[B, T]` (module docstring)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    combine: Callable  # mt.Combiner: (G [T, P], rng) -> update [P]
    name: str = "multitask"

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(f"{n}/{m}" for n, k in zip(self.names, self.kinds)
                     for m in (("auc", "logloss") if k == "binary" else ("mse",)))

    def loss(self, outputs: jax.Array, labels: jax.Array) -> jax.Array:
        """Per-task mean losses `[T]` of outputs / labels `[B, T]`: BCE ('binary') or squared error."""
        binary = jnp.asarray([k == "binary" for k in self.kinds])
        return jnp.where(binary, bce_loss(outputs, labels, axis=0), squared_error(outputs, labels, axis=0))

    def metrics(self, labels: np.ndarray, outputs: np.ndarray, groups: np.ndarray | None) -> dict[str, float]:
        """`{'<task>/auc', '<task>/logloss', ('<task>/gauc')}` per binary task, `{'<task>/mse'}` per regression one."""
        out = {}
        for t, (n, k) in enumerate(zip(self.names, self.kinds)):
            y, z = labels[:, t], outputs[:, t]
            if k == "binary":
                out.update({f"{n}/{m}": v for m, v in metrics_lib.binary_metrics(y, z, groups).items()
                            if m in ("auc", "logloss", "gauc", "positive_rate")})
            else:
                out[f"{n}/mse"] = float(np.mean((np.asarray(z, np.float64) - y) ** 2))
        out["count"] = int(len(labels))
        return out

    def check(self, dataset: Dataset, metric: str) -> None:
        """Labels are `[N, T]` with T = len(names); binary tasks hold only 0/1."""
        labels = dataset.splits["train"][LABELS]
        if labels.ndim != 2 or labels.shape[1] != len(self.names):
            raise ConfigError(f"task.names={self.names}: dataset {dataset.name!r} has labels of shape {labels.shape[1:]} "
                              f"(one column per task expected)")
        for t, (n, k) in enumerate(zip(self.names, self.kinds)):
            bad = ~np.isin(labels[:, t], (0.0, 1.0))
            if k == "binary" and bad.any():
                raise DataError(f"task {n!r} is 'binary' but its train labels hold {labels[np.argmax(bad), t]:g} "
                                f"(set task.kinds, e.g. 'regression')")
        valid = _valid_labels(dataset)
        task, _, m = metric.partition("/")
        if m in ("auc", "gauc"):
            column = valid[:, self.names.index(task)]
            if column.min() == column.max():
                raise DataError(f"the valid split of {dataset.name!r} has only label {column[0]:g} for task {task!r}: "
                                f"early_stopping.metric={metric!r} is undefined on it")


@dataclasses.dataclass(frozen=True)
class LMTask:
    """Next-token prediction over windows `tokens [B, T+1]` (module docstring).

    `token_bytes [V]`: UTF-8 bytes per token id (`jaxrec.data.text.token_bytes`), for
    `bits_per_byte`; None (a pre-tokenized stream) leaves that metric out.
    """

    token_bytes: np.ndarray | None = dataclasses.field(default=None, compare=False)
    name: str = "lm"
    combine: Callable | None = None

    @property
    def metric_names(self) -> tuple[str, ...]:
        return ("perplexity", "nll") + (("bits_per_byte",) if self.token_bytes is not None else ())

    def loss(self, outputs: jax.Array, labels: jax.Array) -> jax.Array:
        """Mean next-token cross-entropy (nats) of logits `[B, T, V]` against ids `[B, T]`, over the
        labels >= 0 (a label < 0 is skipped: a prompt's tokens, padding)."""
        keep = labels >= 0
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32), jnp.maximum(labels, 0))
        return jnp.where(keep, ce, 0.0).sum() / jnp.maximum(keep.sum(), 1)

    def eval_outputs(self, outputs: jax.Array, batch) -> jax.Array:
        """log p(target) `[B, T]` float32 of logits `[B, T, V]`, the targets `batch['tokens'][:, 1:]`."""
        logp = jax.nn.log_softmax(outputs.astype(jnp.float32), axis=-1)
        return jnp.take_along_axis(logp, batch[TOKENS][:, 1:, None].astype(jnp.int32), axis=-1)[..., 0]

    def metrics(self, labels: np.ndarray, outputs: np.ndarray, groups: np.ndarray | None) -> dict[str, float]:
        """`{'nll', 'perplexity', ('bits_per_byte'), 'count'}` of log p(target) `[N, T]` over a whole
        split, the positions whose label is >= 0."""
        labels = np.asarray(labels)
        keep = labels >= 0
        logp = np.asarray(outputs, np.float64)[keep]
        nll = float(-logp.mean())
        out = {"perplexity": math.exp(nll) if nll < 700 else math.inf, "nll": nll}
        if self.token_bytes is not None:
            out["bits_per_byte"] = float(-logp.sum() / math.log(2) / self.token_bytes[labels[keep]].sum())
        out["count"] = int(logp.size)
        return out

    def check(self, dataset: Dataset, metric: str) -> None:
        """Labels are int token ids `[N, T]`, `tokens [N, T+1]`, each label `tokens[:, 1:]` or < 0 (skipped); a valid split."""
        for split, cols in dataset.splits.items():
            labels, tokens = np.asarray(cols[LABELS]), cols.get(TOKENS)
            if labels.ndim != 2 or labels.dtype.kind not in "iu" or tokens is None or tokens.shape != (len(labels), labels.shape[1] + 1):
                raise ConfigError(f"task.name='lm' reads windows tokens [N, T+1] and labels tokens[:, 1:] [N, T] "
                                  f"(dataset.name='text'); dataset {dataset.name!r} has labels {labels.dtype} {labels.shape}"
                                  f"{'' if tokens is None else f' and tokens {tokens.shape}'} in its {split} split")
            if ((labels >= 0) & (labels != np.asarray(tokens)[:, 1:])).any() or not (labels >= 0).any():
                raise DataError(f"dataset {dataset.name!r}, {split} split: task 'lm' labels must be tokens[:, 1:] "
                                f"or < 0 (skipped), with at least one kept")
        _valid_labels(dataset)


@dataclasses.dataclass(frozen=True)
class NextItemTask:
    """Next-item prediction over all items: scores `[B, V]`, targets `[B]` (module docstring)."""

    target_field: str = "target"
    name: str = "next_item"
    combine: Callable | None = None

    @property
    def metric_names(self) -> tuple[str, ...]:
        return metrics_lib.RANKING_METRICS

    @staticmethod
    def _items(outputs: jax.Array) -> jax.Array:
        return outputs[:, 1:].astype(jnp.float32)  # column 0 is padding: never a target, never ranked

    def loss(self, outputs: jax.Array, labels: jax.Array) -> jax.Array:
        """Mean softmax cross-entropy of scores `[B, V]` over items 1..V-1 against ids `[B]`."""
        return optax.softmax_cross_entropy_with_integer_labels(self._items(outputs), labels.astype(jnp.int32) - 1).mean()

    def eval_outputs(self, outputs: jax.Array, batch) -> jax.Array:
        """The target's 1-based pessimistic rank `[B]` int32 among items 1..V-1 of scores `[B, V]`
        (`jaxrec.train.metrics.target_rank`, computed on the device)."""
        s = self._items(outputs)
        t = batch[self.target_field].astype(jnp.int32) - 1
        st = jnp.take_along_axis(s, t[:, None], axis=1)
        return jnp.sum(s >= st, axis=1).astype(jnp.int32)

    def metrics(self, labels: np.ndarray, outputs: np.ndarray, groups: np.ndarray | None) -> dict[str, float]:
        """HR@K, NDCG@K, MRR, count of the ranks `[N]` (`jaxrec.train.metrics.ranking_metrics`)."""
        return metrics_lib.ranking_metrics(outputs)

    def check(self, dataset: Dataset, metric: str) -> None:
        """Labels are int item ids `[N]` >= 1 equal to the `target` column of every split; a valid split."""
        for split, cols in dataset.splits.items():
            labels, target = np.asarray(cols[LABELS]), cols.get(self.target_field)
            if labels.ndim != 1 or labels.dtype.kind not in "iu" or target is None or not np.array_equal(labels, target):
                raise ConfigError(f"task.name={self.name!r} reads int item ids labels [N] equal to a '{self.target_field}' input "
                                  f"(dataset.name='sequential'); dataset {dataset.name!r} has labels {labels.dtype} "
                                  f"{labels.shape} in its {split} split{'' if target is not None else ' and no target column'}")
            if len(labels) and labels.min() < 1:
                raise DataError(f"task.name={self.name!r}: the {split} split of {dataset.name!r} has target id "
                                f"{labels.min()} (item ids start at 1; 0 is padding)")
        if self.target_field not in dataset.inputs:
            raise ConfigError(f"task.name={self.name!r}: dataset {dataset.name!r} does not pass '{self.target_field}' to the "
                              f"model batch (Dataset.inputs), which the ranking hook reads")
        _valid_labels(dataset)


@dataclasses.dataclass(frozen=True)
class GenerativeTask:
    """Next-item prediction by generating the item's semantic ID (module docstring, 'generative')."""

    beam_width: int = 20
    top_k: int = 0
    name: str = "generative"
    combine: Callable | None = None

    @property
    def metric_names(self) -> tuple[str, ...]:
        return metrics_lib.RANKING_METRICS

    def loss(self, outputs: dict, labels: jax.Array) -> jax.Array:
        """Mean over the batch of the summed per-level cross-entropy of `outputs['logits'] [B, L, C]`
        at `outputs['targets'] [B, L]` (the model maps the target item ids `labels` to them)."""
        logits = outputs["logits"].astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, outputs["targets"]).sum(-1).mean()

    def eval_forward(self, model, variables: dict, batch) -> jax.Array:
        """The target's 1-based rank `[B]` int32 among the decoded beams (`generate.nezha.target_rank`)."""
        from jaxrec.generate import nezha as decoding

        beams = decoding.recommend(model, variables, batch, self.beam_width, self.top_k or None)
        target = model.apply(variables, batch, method=type(model).target_codes)
        return decoding.target_rank(beams, target)

    def metrics(self, labels: np.ndarray, outputs: np.ndarray, groups: np.ndarray | None) -> dict[str, float]:
        """HR@K, NDCG@K, MRR (@W), count of the ranks `[N]`."""
        return metrics_lib.ranking_metrics(outputs)

    def check(self, dataset: Dataset, metric: str) -> None:
        """The next-item data of 'next_item'; a beam at least as wide as the largest K of the metrics."""
        NextItemTask(name=self.name).check(dataset, metric)
        widest = max(metrics_lib.HR_KS + metrics_lib.NDCG_KS)
        if int(self.beam_width) < widest:
            raise ConfigError(f"task.beam_width={self.beam_width}: the metrics rank up to K={widest} items, so the beam "
                              f"must hold at least {widest}")
        if int(self.top_k) < 0:
            raise ConfigError(f"task.top_k={self.top_k} must be >= 0 (0 = every code)")


Task = BinaryTask | MultiTask | LMTask | NextItemTask | GenerativeTask


def _valid_labels(dataset: Dataset) -> np.ndarray:
    labels = np.asarray(dataset.splits["valid"][LABELS]) if "valid" in dataset.splits else None
    if labels is None or not len(labels):
        raise DataError(f"dataset {dataset.name!r} has no valid rows: early stopping and model selection need a valid split")
    return labels


def combiner(optimizer: ml_collections.ConfigDict) -> Callable:
    """The multi-task gradient combiner of `optimizer.multitask` (with `optimizer.alpha` for gradops)."""
    name, alpha = optimizer.get("multitask", "linear"), optimizer.get("alpha")
    if name not in COMBINERS:
        raise ConfigError(f"optimizer.multitask={name!r}{_suggest(str(name), COMBINERS)}; expected one of {list(COMBINERS)}")
    if alpha is not None and name != "gradops":
        raise ConfigError(f"optimizer.alpha={alpha} is GradOPS's weighting exponent: it needs optimizer.multitask='gradops' "
                          f"(it is {name!r})")
    return mt.make_combiner(name, **({"alpha": float(alpha)} if alpha is not None else {}))


def make_task(config: ml_collections.ConfigDict, dataset: Dataset) -> Task:
    """The task of `config.task` over `dataset`, checked against its labels and `early_stopping.metric`."""
    t, metric = config.task, str(config.early_stopping.metric)
    if t.name == "binary":
        if config.optimizer.get("multitask", "linear") != "linear" or config.optimizer.get("alpha") is not None:
            raise ConfigError("optimizer.multitask / optimizer.alpha combine several tasks' gradients: they need "
                              "task.name='multitask'")
        task = BinaryTask()
    elif t.name == "multitask":
        labels = dataset.splits["train"][LABELS]
        count = labels.shape[1] if labels.ndim == 2 else 1
        names = tuple(t.get("names", ())) or tuple(dataset.label_names) or tuple(f"task_{i}" for i in range(count))
        kinds = tuple(t.get("kinds", ())) or tuple("binary" if np.isin(labels[:, i], (0.0, 1.0)).all() else "regression"
                                        for i in range(count)) if labels.ndim == 2 else ("binary",)
        if len(kinds) != len(names) or len(set(names)) != len(names):
            raise ConfigError(f"task.names={names} and task.kinds={kinds}: one distinct name and one kind per task")
        for k in kinds:
            if k not in TASK_KINDS:
                raise ConfigError(f"task.kinds contains {k!r}: expected one of {TASK_KINDS}")
        task = MultiTask(names, kinds, combiner(config.optimizer))
    elif t.name == "lm":
        task = LMTask(dataset.side.get(TOKEN_BYTES))
        vocab = next((f.vocab_size for f in dataset.features if f.name == TOKENS), None)
        model_vocab = config.model.get("vocab_size")
        if vocab is not None and model_vocab is not None and int(model_vocab) < int(vocab):
            raise ConfigError(f"model.vocab_size={model_vocab} is smaller than the tokenizer's {vocab} ids "
                              f"(dataset {dataset.name!r}): token ids >= {model_vocab} have no embedding row; set "
                              f"model.vocab_size >= {vocab}")
    elif t.name == "next_item":
        task = NextItemTask()
    elif t.name == "generative":
        task = GenerativeTask(int(t.get("beam_width", 20)), int(t.get("top_k", 0)))
    else:
        raise ConfigError(f"task.name={t.name!r}: the streaming protocol trains through train.py (loop.train_and_evaluate), "
                          f"not an experiment; expected 'binary', 'multitask', 'lm', 'next_item' or 'generative' here")
    check_metric(task, metric, str(config.early_stopping.mode))
    task.check(dataset, metric)
    return task


def check_metric(task: Task, metric: str, mode: str) -> None:
    """`early_stopping.metric` is one of the task's metrics and `mode` is the way it improves."""
    valid = task.metric_names
    if metric not in valid:
        raise ConfigError(f"early_stopping.metric={metric!r}{_suggest(metric, valid)}; expected one of {sorted(valid)}")
    want = METRIC_MODES[metric.rsplit("/", 1)[-1]]
    if mode != want:
        raise ConfigError(f"early_stopping.metric={metric!r} improves when it goes {'up' if want == 'max' else 'down'}: "
                          f"set early_stopping.mode={want!r} (it is {mode!r})")
