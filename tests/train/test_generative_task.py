"""The generative recommenders ('tiger', 'nezha') through the trainer: on-device SID prompts equal
`SIDVocab.history`, the 'generative' task's loss by hand, the traced decoding inside the jitted
predict equals the host-side decoders, ranks by hand, every decoded item is real, training through
`train_and_evaluate` learns, and the config / codes-file errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.features import lengths_key
from jaxrec.data.sequential import HISTORY, TARGET, load_sequential
from jaxrec.errors import ConfigError, DataError
from jaxrec.generate import nezha as decoding
from jaxrec.models.generative import SIDVocab, sid_prompts
from jaxrec.models.generative.recommender import wrapped_net
from jaxrec.pretrain.semantic_ids import add_unique_level, sid_constants
from jaxrec.train import experiment
from jaxrec.train import state as state_lib
from jaxrec.train.cli import eval_main
from jaxrec.train.config import default_config
from jaxrec.train.loop import train_and_evaluate
from jaxrec.train.tasks import GenerativeTask

USERS, H = 30, 6


def test_sid_prompts_equal_the_host_layout():
    rng = np.random.default_rng(0)
    vocab = SIDVocab((5, 4, 3))
    codes = np.stack([rng.integers(0, k, 11) for k in vocab.codebook_sizes], 1)
    lengths = np.array([0, 1, 3, 6, 6, 2])
    history = np.zeros((6, H), np.int64)
    rows = []
    for b, n in enumerate(lengths):
        items = rng.integers(1, 11, n)
        history[b, :n] = items
        rows.append(items.tolist())
    got = sid_prompts(jnp.asarray(vocab.encode(codes)), jnp.asarray(history), jnp.asarray(lengths))
    np.testing.assert_array_equal(np.asarray(got), vocab.history(codes, rows, H))


def test_generative_loss_by_hand():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 2, 5)).astype(np.float32)
    logits[:, 1, 4] = -np.inf  # a padded code of a smaller level (NEZHA)
    targets = np.array([[0, 1], [4, 3], [2, 0]])
    z = logits.astype(np.float64)
    lse = np.log(np.exp(z).sum(-1))
    ref = -(np.take_along_axis(z, targets[..., None], -1)[..., 0] - lse).sum(1).mean()
    got = GenerativeTask().loss({"logits": jnp.asarray(logits), "targets": jnp.asarray(targets)}, None)
    assert float(got) == pytest.approx(ref, rel=1e-6)


def test_target_rank_by_hand():
    codes = jnp.asarray([[[1, 2], [3, 4], [-1, -1]],
                         [[0, 0], [1, 1], [2, 2]]])
    beams = decoding.SIDBeams(codes, jnp.zeros(codes.shape[:2]))
    ranks = decoding.target_rank(beams, jnp.asarray([[3, 4], [5, 5]]))
    np.testing.assert_array_equal(np.asarray(ranks), [2, decoding.MISS])


@pytest.fixture(scope="module")
def codes_file(ml100k_dir, tmp_path_factory):
    """Random 2-level codes (4 x 4) + a unique level for the items of the small slice."""
    data = load_sequential(data_dir=str(ml100k_dir), max_history=H, max_users=USERS)
    n = data.fitted.extra["num_items"]
    rng = np.random.default_rng(0)
    codes, _ = add_unique_level(rng.integers(0, 4, (n, 2)))
    path = tmp_path_factory.mktemp("sid") / "codes.npy"
    np.save(path, codes.astype(np.int32))
    return str(path), codes


def _config(ml100k_dir, codes_path, model="tiger"):
    c = default_config()
    c.dataset = {"name": "sequential", "data_dir": str(ml100k_dir), "max_history": H, "max_users": USERS}
    c.model = {"name": model, "width": 32, "depth": 1, "num_heads": 2, "mlp_width": 64, "dropout": 0.0,
               "sid_source": "file", "sid_path": codes_path}
    c.task = {"name": "generative", "beam_width": 10}
    c.optimizer.lr = 3e-3
    c.train.batch_size, c.train.num_epochs, c.train.eval_batch_size, c.train.eval_steps_per_call = 128, 1, 32, 1
    c.train.progress_bar = False
    c.early_stopping.metric, c.early_stopping.mode, c.early_stopping.patience = "ndcg@10", "max", 0
    return c


@pytest.mark.parametrize("model", ["tiger", "nezha"])
def test_traced_decoding_equals_the_host_decoders_and_outputs_are_real_items(ml100k_dir, codes_file, model):
    path, codes = codes_file
    exp = experiment.build(_config(ml100k_dir, path, model))
    params = exp.init_state().params
    variables = state_lib.variables(params)
    cols = {k: v[:16] for k, v in exp.dataset.columns("valid").items()}
    beams = jax.jit(lambda v, b: decoding.recommend(exp.model, v, b, 10))(variables, cols)
    vocab = exp.model.vocab
    histories = [h[:n].tolist() for h, n in zip(cols[HISTORY], cols[lengths_key(HISTORY)])]
    table = np.concatenate([np.zeros((1, codes.shape[1]), np.int64), codes])
    prompts = vocab.history(table, histories, H)
    net, net_vars = wrapped_net(exp.model), {"params": variables["params"]["net"]}
    verifier = decoding.sid_verifier(vocab, codes)
    ref = (decoding.nezha_beam_search(net, net_vars, prompts, verifier, 10) if model == "nezha"
           else decoding.tiger_beam_search(net, net_vars, prompts, vocab, 10, verifier))
    np.testing.assert_array_equal(np.asarray(beams.codes), np.asarray(ref.codes))
    np.testing.assert_allclose(np.asarray(beams.scores), np.asarray(ref.scores), rtol=1e-5, atol=1e-5)
    items = decoding.lookup_items(codes, np.asarray(beams.codes).reshape(-1, codes.shape[1]))
    assert (items >= 0).all()  # every beam a real item (10 beams <= 16 x ... reachable items: no fillers)
    ranks = np.asarray(exp.predict(params, {k: v[None] for k, v in cols.items()}))[0]
    target = codes[cols[TARGET] - 1]
    expect = [1 + int(np.flatnonzero((np.asarray(beams.codes[b]) == target[b]).all(1))[0])
              if (np.asarray(beams.codes[b]) == target[b]).all(1).any() else decoding.MISS for b in range(16)]
    np.testing.assert_array_equal(ranks, expect)


@pytest.mark.parametrize("model", ["tiger", "nezha"])
def test_trains_through_train_and_evaluate(ml100k_dir, codes_file, model, tmp_path):
    c = _config(ml100k_dir, codes_file[0], model)
    out = train_and_evaluate(c, tmp_path / "wd")
    assert set(out["test"]) >= {"hr@1", "hr@10", "ndcg@10", "mrr"} and out["test"]["count"] == USERS
    assert out["epochs_run"] == 1 and 0.0 <= out["test"]["hr@1"] <= out["test"]["hr@10"] <= 1.0
    evaluated = eval_main(["eval.py", "--workdir", str(tmp_path / "wd"), "--split", "test"])  # rebuilds the codes
    assert all(evaluated[k] == pytest.approx(out["test"][k], abs=1e-9) for k in ("hr@1", "hr@10", "ndcg@10", "mrr"))
    exp = experiment.build(c)  # the compiled train steps fit the SID targets: the loss falls
    state = exp.init_state()
    chunk = {k: v[:8 * 32].reshape((8, 32) + v.shape[1:]) for k, v in exp.dataset.columns("train").items()}
    losses = []
    for _ in range(6):
        state, m = exp.train_steps(state, chunk)
        losses.append(float(np.mean(m["loss"])))
    assert losses[-1] < 0.8 * losses[0], losses


def test_config_and_codes_errors(ml100k_dir, codes_file, tmp_path):
    path, codes = codes_file
    c = _config(ml100k_dir, path)
    c.task = {"name": "next_item"}
    with pytest.raises(ConfigError, match="generates semantic IDs"):
        experiment.build(c)
    c = _config(ml100k_dir, path)
    c.model = {"name": "sasrec", "max_len": H}
    with pytest.raises(ConfigError, match="cannot use"):
        experiment.build(c)
    c = _config(ml100k_dir, path)
    c.task.beam_width = 5
    with pytest.raises(ConfigError, match="beam_width=5"):
        experiment.build(c)
    dup = codes.copy()
    dup[3] = dup[7]
    np.save(tmp_path / "dup.npy", dup)
    with pytest.raises(DataError, match=r"rows \[3, 7\] share the code"):
        experiment.build(_config(ml100k_dir, str(tmp_path / "dup.npy")))
    np.save(tmp_path / "short.npy", codes[:-1])
    with pytest.raises(DataError, match="short.npy: expected integer"):
        experiment.build(_config(ml100k_dir, str(tmp_path / "short.npy")))
    c = _config(ml100k_dir, "")
    with pytest.raises(ConfigError, match="model.sid_path is empty"):
        experiment.build(c)
    c = _config(ml100k_dir, path)
    c.model.sid_source, c.model.sid_table = "collab", str(tmp_path / "short.npy")
    with pytest.raises(DataError, match="sid_table=.*expected floating"):
        experiment.build(c)


def test_collab_item_vectors_from_an_exported_sasrec_table(ml100k_dir, tmp_path):
    c = default_config()
    c.dataset = {"name": "sequential", "data_dir": str(ml100k_dir), "max_history": H, "max_users": USERS}
    c.model = {"name": "sasrec", "width": 16, "depth": 1, "num_heads": 2, "mlp_width": 32, "max_len": H}
    c.task.name = "next_item"
    c.train.batch_size, c.train.num_epochs, c.train.eval_batch_size, c.train.eval_steps_per_call = 256, 1, 64, 1
    c.train.progress_bar = False
    c.early_stopping.metric, c.early_stopping.mode = "ndcg@10", "max"
    train_and_evaluate(c, tmp_path / "sasrec")
    out = tmp_path / "items.npy"
    eval_main(["eval.py", "--workdir", str(tmp_path / "sasrec"), "--split", "valid", "--export_item_table", str(out)])
    exp = experiment.build(c)
    params, _ = experiment.restore_best(exp, tmp_path / "sasrec")
    table = np.load(out)
    np.testing.assert_array_equal(table, np.asarray(params["dense"]["item_embed"]["embedding"])[1:])
    data = exp.dataset
    assert table.shape == (data.fitted.extra["num_items"], 16)
    # 'both' concatenates this table with the MiniLM text block (item_vectors('both'), tests/pretrain)
    got = sid_constants(data, {"sid_source": "collab", "sid_table": str(out), "sid_levels": 2, "sid_codebook_size": 8})
    codes = got["item_codes"].value
    assert codes.shape == (len(table) + 1, 3) and (codes[0] == 0).all()
    assert len(np.unique(codes[1:], axis=0)) == len(table)  # one SID per item (the unique level)
    assert got["codebook_sizes"][:2] == (8, 8)
