"""DEFUSE on your copy of the Criteo conversion logs (Chapelle, KDD 2014), the data of the paper.

    python train.py --config configs/defuse_criteo.py --config.dataset.path=/data/criteo/data.txt \
        --workdir runs/defuse_criteo [--config.task.method=es_dfm]

The file is not downloaded: get it from the Criteo AI Lab page
(`jaxrec.data.conversion_logs.CRITEO_CONVERSIONS_URL`, a tar.gz holding data.txt, licence
click-through). Windows and protocol as the released DEFUSE code [V code]: observation window
1 h, attribution window 30 days (the log's 60 days: pre-train on the first 30, then stream
hourly periods, each tested on the next hour), Adam 1e-3, batch 1024. `dataset.max_rows` reads
only the first lines, for a quick look.
"""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset = {"name": "criteo_conversions", "path": "data.txt", "max_rows": None}
    c.task = {"name": "delayed_feedback", "method": "defuse", "observation_hours": 1.0, "attribution_days": 30.0,
              "pretrain_days": 30.0, "end_day": 60.0, "period_hours": 1.0, "pretrain_epochs": 5,
              "observed_at": "window_end", "checkpoint_every_periods": 24}
    c.model = {"name": "multi_head_dnn", "embed_dim": 8}
    c.optimizer.lr = 1e-3
    c.train.batch_size = 1024
    c.eval_splits = ("test",)
    return c
