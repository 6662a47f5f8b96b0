"""DeepFM from jaxrec pieces in a hand-written optax loop, without train.py.

    python examples/custom_loop.py [--data_dir ../shared/data/ml-100k] [--epochs 2]

Shows that the pieces are plain functions over pytrees: a dataset reader (numpy out), the
Flax model with its shared embedding layer, the exact metrics; the rest (optimizer,
jit, loop) is the user's own code.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec.data import batching
from jaxrec.data.movielens import load_movielens_100k
from jaxrec.models.ctr.deepfm import DeepFM
from jaxrec.train.metrics import binary_metrics


def main(data_dir: str, epochs: int = 2, batch_size: int = 1024, seed: int = 0) -> dict:
    ds = load_movielens_100k(data_dir)
    train, test = ds.columns("train"), ds.columns("test")

    model = DeepFM(ds.features, embed_dim=16, hidden=(256, 128))
    variables = model.init(jax.random.PRNGKey(seed), {k: v[:2] for k, v in train.items()})
    # variables = {'params': MLP + linear bias, 'embedding': the embedding tables}; one
    # optimizer over all of it is the simplest choice in a user's own loop.
    tx = optax.adam(1e-3)
    opt_state = tx.init(variables)

    def loss_fn(variables, batch):
        logits = model.apply(variables, batch, train=True)
        return optax.sigmoid_binary_cross_entropy(logits, batch["labels"]).mean()

    @jax.jit
    def step(variables, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(variables, batch)
        updates, opt_state = tx.update(grads, opt_state, variables)
        return optax.apply_updates(variables, updates), opt_state, loss

    predict = jax.jit(lambda variables, batch: model.apply(variables, batch))

    for epoch in range(epochs):
        losses = []
        for _, chunk in batching.train_chunks(train, batch_size, steps_per_call=1, seed=seed, epoch=epoch):
            batch = {k: jnp.asarray(v[0]) for k, v in chunk.items()}
            variables, opt_state, loss = step(variables, opt_state, batch)
            losses.append(loss)
        print(f"epoch {epoch}: train loss {float(jnp.mean(jnp.stack(losses))):.4f}")

    logits = np.concatenate([np.asarray(predict(variables, {k: v[i:i + 4096] for k, v in test.items()}))
                             for i in range(0, ds.num_rows("test"), 4096)])
    metrics = binary_metrics(test["labels"], logits, test["user_id"])
    print(f"test auc {metrics['auc']:.4f} logloss {metrics['logloss']:.4f} gauc {metrics['gauc']:.4f}")
    return metrics


if __name__ == "__main__":
    default_dir = Path(os.environ["JAXREC_DATA_DIR"]) / "ml-100k" if "JAXREC_DATA_DIR" in os.environ else None
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default=default_dir, help="the GroupLens ml-100k folder (default: env/cache/download)")
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    main(args.data_dir, args.epochs)
