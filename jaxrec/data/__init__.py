"""Datasets, feature specs, encoding and batching.

`DATASETS` maps a config's `dataset.name` to its loader; each loader returns a `Dataset`.
"""

from jaxrec.data.bidwords import load_rewriting
from jaxrec.data.criteo import load_criteo
from jaxrec.data.dataset import LABELS, Dataset
from jaxrec.data.features import Categorical, Numeric, Sequence
from jaxrec.data.movielens import load_movielens_100k
from jaxrec.data.multitask import load_synthetic_multitask
from jaxrec.data.sequential import load_sequential
from jaxrec.data.synthetic import SyntheticSpec, load_synthetic
from jaxrec.data.tabular import load_tabular
from jaxrec.data.text import load_text

DATASETS = {
    "movielens100k": load_movielens_100k,
    "criteo": load_criteo,
    "tabular": load_tabular,
    "synthetic": load_synthetic,
    "synthetic_multitask": load_synthetic_multitask,
    "text": load_text,
    "sequential": load_sequential,
    "rewriting": load_rewriting,
}

__all__ = ["DATASETS", "LABELS", "Dataset", "Categorical", "Numeric", "Sequence",
           "SyntheticSpec", "load_criteo", "load_movielens_100k", "load_sequential", "load_synthetic",
           "load_rewriting", "load_synthetic_multitask", "load_tabular", "load_text"]
