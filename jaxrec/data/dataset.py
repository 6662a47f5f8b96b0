"""The in-memory dataset every reader returns, and the split helpers they share."""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from jaxrec.data.features import Feature, Sequence, lengths_key
from jaxrec.data.fitted import Fitted

LABELS = "labels"
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Encoded train/valid/test splits plus the resolved feature specs.

    Attributes:
      name: dataset name (for logs).
      features: specs with `vocab_size` resolved; the model's embedding layer is built
        from them.
      splits: split name -> column dict. Each column is a numpy array with leading dim
        N_split: int32 ids `[N]` / `[N, L]`, float32 `[N]`, int32 lengths `[N]`, and
        float32 labels `[N]` (or `[N, T]`) under `LABELS`.
      group_key: the column GAUC groups by (e.g. 'user_id'), or None.
      inputs: further columns a model reads besides the features' (e.g. the value
        frequencies of AMTL, `jaxrec.embedding.amtl.add_frequency_columns`).
      side: tables indexed by a feature's row id rather than by example, e.g. each item
        row's title tokens `item_title [V_item, L]` (content encoders, graph builders).
      numeric_counts: split -> numeric feature -> {'missing', 'nan', 'inf'}: how many raw values
        encoded as missing, by cause (`jaxrec.data.encoding.numeric_counts`); empty where a
        reader does not count. `summary()` reports the non-zero ones.
      fitted: what the loader fitted on the train split (vocabularies, numeric quantile
        boundaries, mean / std), or None for a loader that fits nothing; save it with
        `jaxrec.data.fitted.save_fitted` and pass it back as the loader's `fitted=` to encode
        other data exactly as this dataset was.
      label_names: the label column of each task where the loader knows it: labels `[N, T]`
        have column t from `label_names[t]`; one name for labels `[N]`; () if unknown.
    """

    name: str
    features: tuple[Feature, ...]
    splits: Mapping[str, Mapping[str, np.ndarray]]
    group_key: str | None = None
    inputs: tuple[str, ...] = ()
    side: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    numeric_counts: Mapping[str, Mapping[str, Mapping[str, int]]] = dataclasses.field(default_factory=dict)
    fitted: Fitted | None = None
    label_names: tuple[str, ...] = ()

    def num_rows(self, split: str) -> int:
        return len(self.splits[split][LABELS])

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"no feature {name!r} in dataset {self.name!r}; features: {[f.name for f in self.features]}")

    def batch_keys(self) -> tuple[str, ...]:
        """Columns a model batch needs: feature ids/values, sequence lengths, `inputs`, labels."""
        keys = [f.name for f in self.features]
        keys += [lengths_key(f.name) for f in self.features if isinstance(f, Sequence)]
        return tuple(keys) + self.inputs + (LABELS,)

    def columns(self, split: str) -> dict[str, np.ndarray]:
        """The batch columns of `split` (extra columns such as ground truth left out)."""
        return {k: self.splits[split][k] for k in self.batch_keys()}

    def select(self, names) -> "Dataset":
        """The dataset reduced to the features `names` (in the dataset's order), e.g. the fields a
        feature selection kept; KeyError names any unknown one."""
        unknown = sorted(set(names) - {f.name for f in self.features})
        if unknown:
            raise KeyError(f"no feature(s) {unknown} in dataset {self.name!r}; features: {[f.name for f in self.features]}")
        return dataclasses.replace(self, features=tuple(f for f in self.features if f.name in set(names)))

    def summary(self) -> str:
        sizes = ", ".join(f"{s}={self.num_rows(s):,}" for s in self.splits)
        y = np.asarray(self.splits["train"][LABELS])
        if y.dtype.kind in "iu":  # next-token ids [N, T] (jaxrec.data.text); < 0: skipped (jaxrec.data.bidwords)
            rate = f"{int((y >= 0).sum()):,} train target tokens"
        elif y.ndim == 1:
            rate = f"train positive rate {float(np.mean(y)):.3f}"
        else:  # [N, T]: one rate per task
            names = self.label_names if len(self.label_names) == y.shape[1] else [str(t) for t in range(y.shape[1])]
            rate = "train positive rates " + ", ".join(f"{n} {float(m):.3f}" for n, m in zip(names, np.mean(y, axis=0)))
        return f"{self.name}: {sizes}; {len(self.features)} features; {rate}{self._missing_summary()}"

    def _missing_summary(self) -> str:
        """'; treated as missing: price 3 NaN, 1 inf, 2 empty (train 2/1/2, valid 1/0/0, test 0/0/0 NaN/inf/empty)'."""
        parts = []
        for f in self.features:
            per_split = {s: c[f.name] for s, c in self.numeric_counts.items() if f.name in c}
            total = {k: sum(c[k] for c in per_split.values()) for k in ("nan", "inf", "missing")}
            if not any(total.values()):
                continue
            what = ", ".join(f"{n:,} {label}" for n, label in ((total["nan"], "NaN"), (total["inf"], "inf"), (total["missing"], "empty"))
                             if n)
            splits = ", ".join(f"{s} {c['nan']}/{c['inf']}/{c['missing']}" for s, c in per_split.items())
            parts.append(f"{f.name} {what} ({splits} NaN/inf/empty)")
        return "; treated as missing: " + "; ".join(parts) if parts else ""


def random_split(num_rows: int, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Row indices of a seeded random train/valid/test split.

    Uses `numpy.random.default_rng(seed).permutation(num_rows)` and cuts it at the cumulative
    fractions, so `(0.8, 0.1, 0.1)` with seed 2024 on 100,000 rows is exactly the default
    MovieLens split.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions {fractions} must be non-negative and sum to 1")
    perm = np.random.default_rng(seed).permutation(num_rows)
    a = int(round(fractions[0] * num_rows))
    b = a + int(round(fractions[1] * num_rows))
    return {"train": perm[:a], "valid": perm[a:b], "test": perm[b:]}


def take(columns: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Rows `idx` of every column."""
    return {k: np.asarray(v)[idx] for k, v in columns.items()}
