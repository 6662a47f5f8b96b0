"""The state a loader fits on the train split, saved with a run so evaluation encodes with it.

A loader that learns anything from its train split (the vocabularies of `encoding='vocab'`
features; the quantile boundaries of numeric features with `buckets={'quantiles': q}`; mean and
std of numeric features with `transform='standardize'`; `jaxrec.data.encoding.fit`) returns it as
`Dataset.fitted`, a `Fitted`. The trainer saves it in
the workdir (`save_fitted`); evaluation loads it (`load_fitted`) and passes it to the loader
(`fitted=...`), which then encodes every split with it instead of refitting, so a train file
changed since training cannot silently change the ids (and the test AUC).

File format: one JSON object (UTF-8; values of any length, no fixed-width copies)

    {"format": "jaxrec.fitted", "version": 1,
     "features": [{"type": "categorical", "name": ..., <every spec field>}, ...],
     "vocabs": {feature name: {"dtype": "int64" | "str", "values": [...]}, ...},
     "extra": {...}}   (only when a loader fits more than specs and vocabularies)

`features` are the resolved specs (`vocab_size` set; a numeric feature's fitted `boundaries`,
`mean`, `std` as floats, which JSON round-trips exactly); `vocabs[name]` is the sorted vocabulary
of a 'vocab' feature: the id of `values[k]` is `k + 1`, 0 is out-of-vocabulary; `extra` is what
else a loader fitted, as JSON values (the text loader's BPE tokenizer, `jaxrec.data.text`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from jaxrec.data.features import KINDS, Feature, Numeric
from jaxrec.errors import DataError

FORMAT = "jaxrec.fitted"
VERSION = 1
_TYPE = {cls: kind for kind, cls in KINDS.items()}


@dataclasses.dataclass(frozen=True)
class Fitted:
    """What a loader fitted on its train split.

    Attributes:
      features: the resolved feature specs as fitted (`vocab_size` set; numeric `boundaries` from
        `quantiles`, `mean` / `std` for 'standardize').
      vocabs: feature name -> sorted vocabulary `[V]` (int64, or an object array of `str` in
        code-point order) of each `encoding='vocab'` feature; id of `vocab[k]` is `k + 1`.
      extra: further loader-specific state as JSON values (strings, numbers, lists, dicts), e.g.
        the text loader's tokenizer JSON and corpus SHA-256 (`jaxrec.data.text`); {} for most.
    """

    features: tuple[Feature, ...]
    vocabs: Mapping[str, np.ndarray]
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def save_fitted(fitted: Fitted, path: str | os.PathLike) -> None:
    """Writes `fitted` to `path` as JSON (module docstring), atomically (a temporary file
    renamed over `path`), so a kill mid-write leaves the previous file or none."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "features": [{"type": _TYPE[type(f)], **dataclasses.asdict(f)} for f in fitted.features],
        "vocabs": {name: {"dtype": "int64" if np.asarray(v).dtype.kind in "iu" else "str",
                          "values": [int(x) for x in v] if np.asarray(v).dtype.kind in "iu" else [str(x) for x in v]}
                   for name, v in fitted.vocabs.items()},
    }
    if fitted.extra:
        doc["extra"] = dict(fitted.extra)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_fitted(path: str | os.PathLike) -> Fitted:
    """Reads a file written by `save_fitted`; DataError naming the file and what is wrong."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such fitted-state file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable fitted-state file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{path}: not a jaxrec fitted-state file (no \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise DataError(f"{path}: fitted-state format version {doc.get('version')!r}; this jaxrec reads version {VERSION}")
    try:
        features = tuple(_spec(d) for d in doc["features"])
        vocabs = {name: _vocab(v) for name, v in doc["vocabs"].items()}
        extra = dict(doc.get("extra", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: malformed fitted-state file ({type(e).__name__}: {e})") from None
    fitted = Fitted(features, vocabs, extra)
    _check_vocabs(fitted, str(path))
    return fitted


def apply_fitted(fitted: Fitted, features: tuple[Feature, ...],
                 where: str = "fitted state") -> tuple[tuple[Feature, ...], dict[str, np.ndarray]]:
    """The `(specs, vocabs)` that `encoding.fit` would return, taken from `fitted` instead.

    Args:
      fitted: a loader's `Dataset.fitted`, or `load_fitted(path)`.
      features: the loader's specs, `vocab_size` possibly unresolved.
      where: names the state in errors (e.g. its file).
    Returns:
      (the fitted specs in the order of `features`, {name: vocabulary}).
    Raises:
      DataError: naming the feature, if `fitted` lacks a feature, has one more, or has one of
        another type or with another field (the fitted fields, vocab_size, quantile boundaries
        and mean / std, are compared only where `features` gives them).
    """
    by_name = {f.name: f for f in fitted.features}
    wanted = {f.name for f in features}
    extra = sorted(set(by_name) - wanted)
    if extra:
        raise DataError(f"{where}: has feature(s) {extra} that the dataset does not (its features: {sorted(wanted)}); "
                        "was it fitted for another dataset config?")
    resolved = []
    for f in features:
        g = by_name.get(f.name)
        if g is None:
            raise DataError(f"{where}: no feature {f.name!r} (fitted: {sorted(by_name)}); was it fitted for another dataset config?")
        if type(g) is not type(f):
            raise DataError(f"{where}: feature {f.name!r} is {_TYPE[type(f)]} now, {_TYPE[type(g)]} when fitted")
        for field in dataclasses.fields(f):
            now, then = getattr(f, field.name), getattr(g, field.name)
            if now is None and _is_fitted_field(f, field.name):
                continue
            if now != then:
                raise DataError(f"{where}: feature {f.name!r} has {field.name}={now!r} now, {then!r} when fitted")
        resolved.append(g)
    _check_vocabs(fitted, where)
    return tuple(resolved), {f.name: fitted.vocabs[f.name] for f in resolved if f.name in fitted.vocabs}


def _is_fitted_field(f: Feature, field: str) -> bool:
    """Whether `field` of spec `f` is set by fitting (so a config leaves it None)."""
    if field == "vocab_size":
        return True
    return isinstance(f, Numeric) and ((field == "boundaries" and f.quantiles is not None)
                                       or (field in ("mean", "std") and f.transform == "standardize"))


def _spec(d: dict) -> Feature:
    d = dict(d)
    cls = KINDS[d.pop("type")]
    if d.get("boundaries") is not None:
        d["boundaries"] = tuple(float(b) for b in d["boundaries"])
    return cls(**d)


def _vocab(v: dict) -> np.ndarray:
    if v["dtype"] == "int64":
        return np.array(v["values"], dtype=np.int64).reshape(-1)
    if v["dtype"] == "str":
        out = np.empty(len(v["values"]), dtype=object)
        out[:] = [str(x) for x in v["values"]]
        return out
    raise ValueError(f"unknown vocabulary dtype {v['dtype']!r}")


def _check_vocabs(fitted: Fitted, where: str) -> None:
    """Every 'vocab' feature has a sorted, duplicate-free vocabulary of vocab_size - 1 values."""
    for f in fitted.features:
        if isinstance(f, Numeric):
            _check_numeric(f, where)
            continue
        if f.encoding != "vocab":
            continue
        if f.name not in fitted.vocabs:
            raise DataError(f"{where}: feature {f.name!r} (encoding='vocab') has no vocabulary")
        v = fitted.vocabs[f.name]
        if f.vocab_size != len(v) + 1:
            raise DataError(f"{where}: feature {f.name!r}: vocab_size {f.vocab_size} but {len(v):,} vocabulary values (+1 expected)")
        items = v.tolist()
        if any(not a < b for a, b in zip(items, items[1:])):
            raise DataError(f"{where}: feature {f.name!r}: the vocabulary is not sorted and duplicate-free")


def _check_numeric(f: Numeric, where: str) -> None:
    """A fitted numeric feature has its fitted values, finite, boundaries increasing, std > 0."""
    if f.needs_fit:
        raise DataError(f"{where}: numeric feature {f.name!r} lacks its fitted "
                        f"{'boundaries' if f.boundaries is None and f.quantiles is not None else 'mean / std'}")
    b = f.boundaries or ()
    if not all(np.isfinite(b)) or any(x >= y for x, y in zip(b, b[1:])):
        raise DataError(f"{where}: numeric feature {f.name!r}: boundaries {list(b)} are not finite and strictly increasing")
    if f.mean is not None and not (f.std is not None and np.isfinite(f.mean) and np.isfinite(f.std) and f.std > 0):
        raise DataError(f"{where}: numeric feature {f.name!r}: mean {f.mean!r}, std {f.std!r} (need finite, std > 0)")


__all__ = ["FORMAT", "VERSION", "Fitted", "apply_fitted", "load_fitted", "save_fitted"]
