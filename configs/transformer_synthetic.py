"""The vanilla transformer over field tokens (AutoInt-style) on the synthetic planted-interaction
data of the FAT scaling experiment: everything as in fat_synthetic.py but the model."""

from pathlib import Path

from jaxrec.train.cli import load_config_file


def get_config():
    c = load_config_file(str(Path(__file__).with_name("fat_synthetic.py")))
    c.model.name = "transformer"
    return c
