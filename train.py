"""Train a jaxrec experiment: `python train.py --config configs/deepfm_movielens.py [--workdir DIR]`.

All logic lives in `jaxrec.train`; see `jaxrec/train/cli.py` for the flags.
"""

from jaxrec.train.cli import train_main

if __name__ == "__main__":
    train_main()
