"""The vanilla transformer over field tokens (AutoInt-style) on the default MovieLens-100K
task: everything as in fat_movielens.py but the model."""

from pathlib import Path

from jaxrec.train.cli import load_config_file


def get_config():
    c = load_config_file(str(Path(__file__).with_name("fat_movielens.py")))
    c.model.name = "transformer"
    return c
