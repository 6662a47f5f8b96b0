"""Exact ranking and calibration metrics over a whole split (host-side numpy).

AUC is the Mann-Whitney statistic with tied scores given their average rank (equal to the
area under the ROC curve with ties counted as half). GAUC (Zhou et al., DIN, KDD 2018) is
the impression-weighted mean of per-group AUCs over groups that have both classes.
Logloss is computed from logits (stable for confident predictions). PR-AUC is average
precision (the step-wise area under the precision-recall curve).

Next-item ranking (HR@K, NDCG@K, MRR over a full ranking of the catalogue) is at the end of this
module; ties there are pessimistic (RecBole reads `torch.topk`'s order, arbitrary among exactly
equal floats: with a trained model's scores ties are rare and the two agree; a popularity
scorer's many ties are where they differ).
"""

from __future__ import annotations

import numpy as np


def _grouped_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group AUC and impression count, for groups with both classes."""
    order = np.lexsort((scores, groups))
    g, s, y = groups[order], scores[order], labels[order].astype(np.float64)
    n = len(g)
    pos = np.arange(n, dtype=np.float64)
    # Runs of equal (group, score) share their average 0-based position.
    new_run = np.ones(n, bool)
    new_run[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
    run = np.cumsum(new_run) - 1
    run_first = np.flatnonzero(new_run)
    run_last = np.append(run_first[1:], n) - 1
    avg_pos = ((run_first + run_last) / 2.0)[run]
    new_group = np.ones(n, bool)
    new_group[1:] = g[1:] != g[:-1]
    group_id = np.cumsum(new_group) - 1
    group_start = pos[new_group][group_id]
    rank = avg_pos - group_start + 1.0  # 1-based rank within the group
    n_pos = np.bincount(group_id, weights=y)
    count = np.bincount(group_id).astype(np.float64)
    n_neg = count - n_pos
    rank_sum = np.bincount(group_id, weights=rank * y)
    ok = (n_pos > 0) & (n_neg > 0)
    auc = (rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    return auc, count[ok]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of scores `[N]` for binary labels `[N]`; NaN if only one class is present."""
    labels, scores = np.asarray(labels).ravel(), np.asarray(scores, np.float64).ravel()
    a, _ = _grouped_auc(labels, scores, np.zeros(len(labels), np.int64))
    return float(a[0]) if len(a) else float("nan")


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Impression-weighted mean AUC over groups `[N]` having both classes; NaN if none."""
    a, w = _grouped_auc(np.asarray(labels).ravel(), np.asarray(scores, np.float64).ravel(), np.asarray(groups).ravel())
    return float(np.sum(a * w) / np.sum(w)) if len(a) else float("nan")


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """PR-AUC as average precision of scores `[N]` for binary labels `[N]`: sum over the distinct
    score thresholds, high to low, of precision times the recall gained (tied scores form one
    step, as scikit-learn's `average_precision_score`); NaN without positives."""
    y = np.asarray(labels, np.float64).ravel()
    s = np.asarray(scores, np.float64).ravel()
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # the end of each run of equal scores
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall_gain = np.diff(np.r_[0.0, tp]) / y.sum()
    return float(np.sum(precision * recall_gain))


def logloss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary cross-entropy of logits `[N]` against labels `[N]` in [0, 1]."""
    z, y = np.asarray(logits, np.float64).ravel(), np.asarray(labels, np.float64).ravel()
    return float(np.mean(y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z)))


def binary_metrics(labels: np.ndarray, logits: np.ndarray, groups: np.ndarray | None = None) -> dict[str, float]:
    """{'auc', 'logloss', 'gauc' (if groups), 'positive_rate', 'mean_prediction', 'count'}."""
    labels, logits = np.asarray(labels).ravel(), np.asarray(logits).ravel()
    out = {
        "auc": auc(labels, logits),
        "logloss": logloss(labels, logits),
        "positive_rate": float(np.mean(labels)),
        "mean_prediction": float(np.mean(1.0 / (1.0 + np.exp(-logits.astype(np.float64))))),
        "count": int(len(labels)),
    }
    if groups is not None:
        out["gauc"] = gauc(labels, logits, groups)
    return out


# Full-ranking metrics of next-item recommendation (one target per row, ranked among all items).
#
# rank = 1 + #{j != target : s_j >= s_target} over the N real items (id 0, padding, excluded):
# ties are counted pessimistically (the target after every item scoring as high), so a constant
# scorer gets rank N, not 1. Items of the user's own history are ranked like any other (RecBole's
# default for sequential models, whose full-sort evaluation masks no history).
#   HR@K   = mean_r [rank_r <= K]
#   NDCG@K = mean_r [rank_r <= K] / log2(rank_r + 1)      (one relevant item: IDCG = 1)
#   MRR    = mean_r 1 / rank_r
HR_KS, NDCG_KS = (1, 5, 10), (5, 10)
RANKING_METRICS = tuple(f"hr@{k}" for k in HR_KS) + tuple(f"ndcg@{k}" for k in NDCG_KS) + ("mrr",)


def target_rank(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1-based pessimistic rank `[B]` of `target [B]` (ids in 1..N) among the scores `[B, N + 1]`
    of ids 0..N, column 0 (padding) ignored (the definition above; a host-side reference of
    `jaxrec.train.tasks.NextItemTask.eval_outputs`)."""
    s = np.asarray(scores, np.float64)[:, 1:]
    t = np.asarray(target).reshape(-1) - 1
    st = s[np.arange(len(t)), t]
    return (s >= st[:, None]).sum(axis=1).astype(np.int64)  # counts the target itself: 1 + the others


def ranking_metrics(ranks: np.ndarray, hr_ks=HR_KS, ndcg_ks=NDCG_KS) -> dict[str, float]:
    """`{'hr@K', 'ndcg@K', 'mrr', 'count'}` of 1-based target ranks `[N]` (definitions above)."""
    r = np.asarray(ranks, np.float64).reshape(-1)
    if len(r) and r.min() < 1:
        raise ValueError(f"ranks are 1-based; got {r.min():g}")
    out = {f"hr@{k}": float(np.mean(r <= k)) for k in hr_ks}
    out.update({f"ndcg@{k}": float(np.mean(np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0))) for k in ndcg_ks})
    out["mrr"] = float(np.mean(1.0 / r))
    out["count"] = int(len(r))
    return out
