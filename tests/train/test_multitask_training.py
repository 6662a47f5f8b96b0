"""Multi-task training: losses by hand, and a short run that learns both tasks."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.dataset import LABELS
from jaxrec.data.multitask import load_synthetic_multitask
from jaxrec.errors import ConfigError
from jaxrec.models.multitask import SharedBottom
from jaxrec.optim import multitask as mt
from jaxrec.train import multitask as tm


def test_task_losses_by_hand():
    out = jnp.array([[0.0, 1.0], [2.0, 3.0]])
    y = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    bce = np.mean([np.log(2.0), np.log1p(np.exp(2.0))])
    np.testing.assert_allclose(tm.task_losses(out, y, ["binary", "regression"]), [bce, (1.0 + 4.0) / 2], rtol=1e-6)
    with pytest.raises(ConfigError, match="task kind 'ranking'"):
        tm.make_train_epoch(None, None, ["ranking"])


@pytest.mark.parametrize("combiner", [mt.gradops(alpha=-1.0), mt.pcgrad()])
def test_training_learns_both_tasks(combiner):
    ds = load_synthetic_multitask(rows=4000, dim=10, correlation=0.5, seed=0)
    model = SharedBottom(ds.features, num_tasks=2, embed_dim=4, bottom=(32,), tower=(16,))
    variables, history = tm.train(model, ds, ["regression", "regression"], combiner, epochs=4, lr=3e-3)
    test = tm.evaluate(model, variables, ds, "test", ["regression", "regression"], [0, 1])
    var = np.var(ds.splits["test"][LABELS], axis=0)
    assert all(m["mse"] < 0.5 * v for m, v in zip(test, var)), (test, var)
    assert history[-1]["train_loss"][0] < history[0]["train_loss"][0]
    one = SharedBottom(ds.features, num_tasks=1, embed_dim=4, bottom=(32,), tower=(16,))
    single, _ = tm.train(one, ds, ["regression"], mt.linear(), tasks=[1], epochs=4, lr=3e-3)  # task 2 alone
    (alone,) = tm.evaluate(one, single, ds, "test", ["regression"], [1])
    assert alone["mse"] < 0.5 * var[1] and abs(alone["mse"] - test[1]["mse"]) < 0.5 * var[1]
