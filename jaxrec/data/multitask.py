"""Multi-task data: the MMoE synthetic construction with a chosen task correlation, and the
MovieLens-100K multi-task labels (`load_movielens_100k(labels='multitask')`).

Synthetic (Ma et al., KDD 2018, §4): u_1, u_2 orthonormal in R^d; w_1 = c u_1,
w_2 = c (p u_1 + sqrt(1 - p^2) u_2), so cos(w_1, w_2) = p; x ~ N(0, I_d);

    y_t = w_t^T x + sum_{i=1..m} sin(a_i w_t^T x + b_i) + eps,   a_i, b_i ~ N(0, 1), eps ~ N(0, noise^2)

p is the correlation knob (the Pearson correlation of the labels grows with it). With
`kind='classification'`, label_t = 1[y_t > median(y_t)] (our addition [I]).
"""

from __future__ import annotations

import numpy as np

from jaxrec.data.dataset import LABELS, Dataset, random_split, take
from jaxrec.data.features import Numeric
from jaxrec.errors import ConfigError

TASK_KINDS = ("regression", "classification")


def mmoe_weights(dim: int, correlation: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """The two task weight vectors `[2, dim]` with cosine `correlation` (module docstring)."""
    if not -1.0 <= correlation <= 1.0:
        raise ConfigError(f"dataset.correlation must be in [-1, 1], got {correlation!r}")
    u, _ = np.linalg.qr(rng.normal(size=(dim, 2)))  # two orthonormal columns
    w1 = scale * u[:, 0]
    w2 = scale * (correlation * u[:, 0] + np.sqrt(1.0 - correlation ** 2) * u[:, 1])
    return np.stack([w1, w2])


def load_synthetic_multitask(rows: int = 20_000, dim: int = 100, correlation: float = 0.5, sin_terms: int = 10,
                             scale: float = 1.0, noise: float = 0.1, kind: str = "regression", seed: int = 0) -> Dataset:
    """Two tasks from the MMoE construction as a `Dataset`: `dim` numeric features `x_<i>`, labels
    `[N, 2]`, split 80/10/10. Deterministic in `seed`."""
    if kind not in TASK_KINDS:
        raise ConfigError(f"dataset.kind={kind!r}: expected one of {TASK_KINDS}")
    rng = np.random.default_rng(seed)
    w = mmoe_weights(dim, correlation, scale, rng)
    a, b = rng.normal(size=sin_terms), rng.normal(size=sin_terms)
    x = rng.normal(size=(rows, dim)).astype(np.float32)
    z = x @ w.T                                                      # [N, 2]
    y = z + np.sin(z[..., None] * a + b).sum(-1) + noise * rng.normal(size=z.shape)
    if kind == "classification":
        y = (y > np.median(y, axis=0)).astype(np.float32)
    cols = {f"x_{i}": x[:, i] for i in range(dim)}
    cols[LABELS] = y.astype(np.float32)
    idx = random_split(rows, (0.8, 0.1, 0.1), seed)
    return Dataset(name=f"synthetic_multitask_p{correlation:g}", features=tuple(Numeric(f"x_{i}") for i in range(dim)),
                   splits={s: take(cols, rows_) for s, rows_ in idx.items()})
