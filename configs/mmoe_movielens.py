"""MMoE on MovieLens-100K with three tasks: like (rating >= 4), love (rating = 5) and the rating
itself (regression), trained through train.py with a multi-task gradient combiner.

    python train.py --config configs/mmoe_movielens.py --workdir runs/mmoe \
        --config.optimizer.multitask=pcgrad            # linear | pcgrad | mgda | cagrad | gradops
    python train.py --config configs/mmoe_movielens.py --workdir runs/mmoe_gradops \
        --config.optimizer.multitask=gradops --config.optimizer.alpha=-1

Early stopping follows the like task's valid AUC (`early_stopping.metric`: any `<task>/<metric>`,
e.g. 'rating/mse' with mode 'min'); metrics.json holds every task's metrics. Multi-task
combination covers the tables too, so the tables use an optax optimizer (not row-wise).
The model sizes follow docs/results/multitask.md's MovieLens setting (embedding 8, experts 64).
"""

from jaxrec.train.config import default_config


def get_config():
    c = default_config()
    c.dataset.name = "movielens100k"
    c.dataset.data_dir = None  # None: $JAXREC_DATA_DIR/ml-100k, ~/.cache/jaxrec/ml-100k, or download
    c.dataset.labels = "multitask"  # labels [N, 3]: like, love, rating
    c.task.name = "multitask"
    c.task.names = ()               # () = the dataset's label names (like, love, rating)
    c.task.kinds = ()               # () = inferred: like, love binary (0/1 labels); rating regression
    c.model.name = "mmoe"
    c.model.embed_dim = 8
    c.model.num_experts = 4
    c.model.expert = (64,)
    c.model.tower = (32,)
    c.optimizer.multitask = "gradops"  # alpha unset: GradOPS's equal weighting (alpha = 0)
    c.train.batch_size = 256
    c.early_stopping.metric = "like/auc"
    c.early_stopping.mode = "max"
    return c
