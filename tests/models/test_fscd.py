"""FSCD: costs and budgeted selection by hand, gates that saturate to 0/1, and training that keeps
the informative fields and drops pure-noise ones (whose only effect is their cost)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.data.features import Categorical
from jaxrec.models.ctr.fscd import field_costs, keep_probabilities, relaxed_gates, select_fields


def test_costs_and_selection_by_hand():
    feats = (Categorical("a", vocab_size=10), Categorical("b", vocab_size=1000), Categorical("c", vocab_size=100))
    c = field_costs(feats, dim=8, complexity={"b": 2.0})
    np.testing.assert_allclose(c, [0.5 + 1 / 3, 1.0 + 1.0, 0.5 + 2 / 3])
    names = ["a", "b", "c"]
    assert select_fields(names, np.array([0.2, 0.9, 0.6]), c, budget=2.5) == ["b"]          # b (2.0), then c does not fit
    assert select_fields(names, np.array([0.2, 0.9, 0.6]), c, budget=3.1) == ["b", "a"]     # c (2 + 1.17) no, a (2 + 0.83) yes
    assert select_fields(names, np.array([0.2, 0.9, 0.6]), c, budget=10) == ["b", "c", "a"]


def test_relaxed_gates_saturate_and_follow_delta():
    u = jax.random.uniform(jax.random.PRNGKey(0), (20000,), minval=1e-6, maxval=1 - 1e-6)
    for theta in (-2.0, 0.0, 1.5):
        z = relaxed_gates(jnp.float32(theta), u, 0.1)
        assert float(jnp.mean((z < 0.05) | (z > 0.95))) > 0.8  # near-binary at tau = 0.1
        assert abs(float(jnp.mean(z > 0.5)) - float(jax.nn.sigmoid(theta))) < 0.01  # P(gate open) = delta


def test_training_keeps_informative_fields_and_drops_noise(tmp_path):
    from jaxrec.data.synthetic import load_synthetic
    from jaxrec.train import experiment
    from jaxrec.train import loop
    from jaxrec.train.config import default_config

    data = load_synthetic(rows=30_000, num_fields=3, vocab_sizes=50, interaction_order=1, num_interactions=3,
                          first_order_scale=1.5, noise=0.1, zipf_exponent=0.0)
    rng = np.random.default_rng(0)
    splits = {s: {**cols, **{f"noise{i}": rng.integers(1, 50, len(cols["labels"])).astype(np.int32) for i in range(3)}}
              for s, cols in data.splits.items()}
    data = dataclasses.replace(data, splits=splits, features=data.features + tuple(
        Categorical(f"noise{i}", encoding="identity", vocab_size=50) for i in range(3)))
    c = default_config()
    c.dataset.name = "synthetic"
    c.model = type(c.model)({"name": "fscd", "embed_dim": 8, "hidden": (32,), "complexity_weight": 0.01,
                             "embed_init_std": 0.05})
    c.optimizer.lr = 1e-2
    c.train.update(num_epochs=12, batch_size=512, progress_bar=False)
    c.early_stopping.patience = 0
    exp = experiment.build(c, data)
    result = loop.train_and_evaluate(c, tmp_path, dataset=data)
    params, _ = exp.checkpointer(tmp_path / "checkpoints").restore(exp.init_state(place=False))
    delta = keep_probabilities(params.params["dense"])
    assert delta[:3].min() > 0.85 and delta[3:].max() < 0.05, delta  # moving to 1 and 0
    names = [f.name for f in data.features]
    assert sorted(select_fields(names, delta, exp.model.costs(), budget=exp.model.costs()[:3].sum())) == ["f0", "f1", "f2"]
    assert result["test"]["auc"] > 0.75
    report = result["model_report"]  # what train.py records
    assert sorted(report["selected"]) == ["f0", "f1", "f2"] and set(report["ranking"][:3]) == {"f0", "f1", "f2"}
    assert exp.model.costs().shape == (6,)
