"""The embedding plan is data: built from features, table options and declared layers, it is what
the model's initialised tables hold, and it names each gather's stack."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.features import Categorical, Numeric, Sequence
from jaxrec.embedding import EMBEDDING, LOOKUP_IDS, EmbeddingLayer, embedding_plan, make_plan
from jaxrec.embedding.rowwise import stack_row_grads
from jaxrec.embedding.specs import TableOptions
from jaxrec.models import MODELS, build_model, model_options

FEATURES = (Categorical("user", vocab_size=5), Categorical("item", vocab_size=7, group="items"),
            Sequence("hist", max_len=3, vocab_size=9, group="items"), Categorical("city", vocab_size=4),
            Numeric("age"))
SGD = TableOptions(optimizer={"name": "sgd", "lr": 0.1})


def batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"user": jnp.asarray(rng.integers(0, 5, n), jnp.int32), "item": jnp.asarray(rng.integers(0, 7, n), jnp.int32),
            "hist": jnp.asarray(rng.integers(0, 9, (n, 3)), jnp.int32), "hist_length": jnp.asarray(rng.integers(0, 4, n), jnp.int32),
            "city": jnp.asarray(rng.integers(0, 4, n), jnp.int32), "age": jnp.asarray(rng.random(n), jnp.float32),
            "labels": jnp.zeros((n,), jnp.float32)}


def test_plan_worked_by_hand():
    """user (5 rows), items (max(7, 9) = 9 rows, read by item and hist) and city (4 rows); city has
    its own optimizer, so its own stack; age is numeric (no table)."""
    plan = make_plan(FEATURES, {"embedding": 8, "linear": 1}, {"city": SGD})
    assert list(plan.layouts) == [("embedding", "stacked"), ("embedding", "stacked_1"), ("linear", "stacked"), ("linear", "stacked_1")]
    default, own = plan.layouts[("embedding", "stacked")], plan.layouts[("embedding", "stacked_1")]
    assert (default.names, default.sizes, default.offsets, default.total_rows) == (("user", "items"), (5, 9), {"user": 0, "items": 5}, 14)
    assert (own.names, own.sizes, own.offsets, own.optimizer) == (("city",), (4,), {"city": 0}, (("lr", 0.1), ("name", "sgd")))
    layer = plan.layer("embedding")
    assert layer.dim == 8 and plan.layer("linear").dim == 1
    assert layer.where == {"user": ("stacked", 0), "items": ("stacked", 5), "city": ("stacked_1", 0)}
    # one gather per stack for the single ids, one for the sequence; the plan says which stack each reads
    assert layer.gathers == (("rows", "stacked"), ("rows:stacked_1", "stacked_1"), ("rows_hist", "stacked"))
    assert plan.gathers(("embedding", "stacked")) == ("rows", "rows_hist")
    assert plan.gathers(("embedding", "stacked_1")) == ("rows:stacked_1",)


def test_plan_is_what_the_layer_holds_and_gathers():
    layer = EmbeddingLayer(FEATURES, 8, tables=(("city", SGD),))
    plan = make_plan(FEATURES, {"embedding": 8}, (("city", SGD),))
    assert layer.plan is plan.layer("embedding")  # one pure function, one (cached) value
    b = batch()
    v = layer.init(jax.random.PRNGKey(0), b)
    assert {s: t.shape for s, t in v[EMBEDDING].items()} == {"stacked": (14, 8), "stacked_1": (4, 8)}
    # the layer sows and perturbs exactly the plan's gathers
    _, sown = layer.apply(v, b, mutable=[LOOKUP_IDS, "perturbations"])
    assert set(sown[LOOKUP_IDS]) == set(sown["perturbations"]) == {n for n, _ in plan.layer("embedding").gathers}
    grads = {k: jnp.ones_like(g) for k, g in sown["perturbations"].items()}
    rows = stack_row_grads(plan, {"embedding": v[EMBEDDING]}, {"embedding": sown[LOOKUP_IDS]}, {"embedding": grads})
    # stacked: user ids, then item ids + 5 (one gather 'rows'), then hist ids + 5 ('rows_hist'); stacked_1: city
    want = np.concatenate([np.stack([b["user"], b["item"] + 5], 1).reshape(-1), (b["hist"] + 5).reshape(-1)])
    np.testing.assert_array_equal(rows[("embedding", "stacked")][0], want)
    np.testing.assert_array_equal(rows[("embedding", "stacked_1")][0], b["city"])


@pytest.mark.parametrize("name", sorted(n for n in MODELS if "history" not in model_options(n)
                                         and getattr(MODELS[n], "EMBEDDING_LAYERS", None) is not None))  # gpt, sasrec: no tables
def test_every_models_plan_is_its_initialised_tables(name):
    """A model's plan (no tracing) has exactly the stacked tables `model.init` creates, of the same shapes."""
    feats = FEATURES[:2] + FEATURES[3:4]
    tables = (("city", SGD), ("user", TableOptions(sharding="contiguous")))
    model = build_model(name, feats, tables=tables)
    plan = embedding_plan(model)
    v = model.init(jax.random.PRNGKey(0), batch())
    from flax import traverse_util

    held = {p: t.shape for p, t in traverse_util.flatten_dict(v[EMBEDDING]).items()}
    assert held == {p: (l.total_rows, plan.layer(p[:-1]).dim) for p, l in plan.layouts.items()}
    assert len({p[-1] for p in held}) == 3  # default, own optimizer, own sharding


def test_a_model_that_does_not_declare_its_layers_is_told_how():
    import flax.linen as nn

    class Undeclared(nn.Module):
        features: tuple
        tables: tuple = ()

    with pytest.raises(TypeError, match="EMBEDDING_LAYERS"):
        embedding_plan(Undeclared(FEATURES))
