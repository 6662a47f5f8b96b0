"""DEFUSE (Chen et al., WWW 2022) on the MovieLens-100K conversion stream, through train.py.

    python train.py --config configs/defuse_movielens.py --workdir runs/defuse
    python train.py --config configs/defuse_movielens.py --workdir runs/es_dfm --config.task.method=es_dfm
    python eval.py --workdir runs/defuse          # the pooled test metrics of the streamed periods

The protocol of docs/results/delayed_feedback.md (`jaxrec.train.delayed_feedback`): every rating
is a click, in time order over 60 days, converting iff rating >= 4 after a per-item exponential
delay (median over items 6 h) [a semi-synthetic stand-in: MovieLens has no conversion times;
configs/defuse_criteo.py reads the real Criteo conversion logs]. Pre-train 5 epochs on days
0-30, then for every hour of days 30-60 train one pass on the hour's stream and test on the next
hour's clicks against their true labels. Methods (`task.method`): pretrain, oracle, vanilla,
fnw, fnc, es_dfm, defer, dfm, defuse, defuse_code, bidefuse. A checkpoint follows every
pre-training epoch and every `task.checkpoint_every_periods` hours; a killed run resumes.
"""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset = {"name": "movielens_conversions", "data_dir": None, "days": 60.0, "seed": 0,
                 "delay": {"distribution": "exponential", "scale_hours": 6.0, "spread": 1.5}}
    c.task = {"name": "delayed_feedback", "method": "defuse", "observation_hours": 1.0, "attribution_days": 30.0,
              "pretrain_days": 30.0, "end_day": 60.0, "period_hours": 1.0, "pretrain_epochs": 5,
              "observed_at": "window_end", "checkpoint_every_periods": 24}
    c.model = {"name": "multi_head_dnn", "embed_dim": 8}
    c.optimizer.lr = 1e-3
    c.train.batch_size = 256
    c.eval_splits = ("test",)
    return c
