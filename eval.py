"""Evaluate a checkpoint: `python eval.py --workdir DIR --split test [--checkpoint best|latest]`."""

from jaxrec.train.cli import eval_main

if __name__ == "__main__":
    eval_main()
