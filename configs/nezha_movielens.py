"""NEZHA on MovieLens-100K next-item recommendation: `configs/gr_movielens.py` (same data, semantic
IDs, backbone and training) with NEZHA's model: L placeholder tokens after the history, one
backbone pass, the MTP head (per-level logits, recurrent transitions; teacher forcing in
training), beam search inside the head only with the hash-set verifier at every level.
`task.top_k = 0`: every code of a level per beam (the paper's beam = top-k = K setting when the
beam is the codebook size)."""

from pathlib import Path

from jaxrec.train.cli import load_config_file


def get_config():
    c = load_config_file(str(Path(__file__).with_name("gr_movielens.py")))
    c.model.name = "nezha"
    c.task.top_k = 0
    return c
