"""Train DeepFM on your own CSV or Parquet file, no code needed.

    python train.py --config configs/deepfm_csv.py --config.dataset.path=/data/clicks.csv \
        --config.dataset.label=clicked

Edit `features` to describe your columns: 'categorical' (vocabulary from the train split,
or encoding='hash' with hash_buckets), 'sequence' (separator-joined lists, max_len),
'numeric' (floats; transform 'log1p' | 'log_square' | 'standardize', bucket `boundaries`,
or `buckets={'quantiles': 10}` fitted on the train split). The label column holds 0 / 1, or
text with `--config.dataset.positive=yes`. See jaxrec/data/tabular.py and jaxrec/data/features.py.
"""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "tabular"
    c.dataset.path = "clicks.csv"
    c.dataset.label = "label"
    c.dataset.features = [
        {"type": "categorical", "name": "user"},
        {"type": "categorical", "name": "item"},
        {"type": "categorical", "name": "category", "encoding": "hash", "hash_buckets": 1000},
        {"type": "sequence", "name": "tags", "max_len": 5, "separator": "|"},
        {"type": "numeric", "name": "price", "transform": "log1p"},
    ]
    c.dataset.group_key = "user"
    c.model.name = "deepfm"
    c.model.embed_dim = 16
    c.model.hidden = (256, 128)
    return c
