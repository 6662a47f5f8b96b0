"""Command-line entry points behind `train.py` and `eval.py` (no training logic here).

    python train.py --config configs/deepfm_movielens.py --workdir runs/deepfm \
        --config.optimizer.lr=3e-4 --config.dataset.data_dir=/data/ml-100k [--profile]
    python eval.py --workdir runs/deepfm --split test [--checkpoint best|latest] [--output m.json] \
        [--config.dataset.path=/new/place/clicks.csv]

Why `--config.a.b=value` has its own parser here rather than `ml_collections.config_flags`
(checked against ml-collections 1.1: `DEFINE_config_file` + `flags.FLAGS(argv)`):
  * config_flags only overrides keys the config file already has. jaxrec's open sections take
    new keys: a model's or dataset's options (`--config.model.num_cross=3`, checked against
    the model's / loader's signature by `validate`), `--config.cross_features.<key>`, and
    per-table options (`--config.tables.<table>.sharding=contiguous`, the `<table>` section
    created on the fly). config_flags answers those with `AttributeError: 'num_cross'` /
    `KeyError: 'item'`.
  * config_flags refuses to override a key whose value is None ("Type NoneType ... is not
    supported for overriding"), e.g. `sparse_optimizer.initial_accumulator`; here the text
    is parsed as a Python literal (a bare string if it is not one).
  * Errors here name the whole key, its section's valid keys and a close match
    (`unknown config key 'config.train.batchsize' (did you mean 'batch_size'?)`), as a
    `ConfigError` (exit 2); config_flags raises the bare attribute name.
  * `train_main(argv)` / `eval_main(argv)` are called many times in one process (tests,
    `benchmarks/bad_inputs.py`); absl's `FLAGS` is process-global state defined once.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

from jaxrec.errors import ConfigError, DataError, TrainingDiverged


def _setup_logging() -> None:
    """Logging, after joining a multi-process run if this is one (`jaxrec.distributed.launch`):
    jaxrec's own records at INFO on process 0 only; other libraries' at WARNING and above
    (JAX logs its backend probes at INFO, e.g. "Unable to initialize backend 'tpu'" on every
    CPU run; orbax logs every save)."""
    from absl import logging as absl_logging

    from jaxrec.distributed import runtime

    if runtime.is_multiprocess():  # CPU collectives across processes need gloo (runtime.initialize)
        import jax

        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    runtime.initialize()

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("jaxrec").setLevel(logging.INFO if runtime.is_main() else logging.WARNING)


def _fail(e: Exception) -> None:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def load_config_file(path: str):
    """Imports an experiment file and returns its `get_config()` ConfigDict."""
    import importlib.util

    if not Path(path).is_file():
        raise ConfigError(f"--config {path}: no such file")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"--config {path}:{e.lineno}: {e.msg}: {(e.text or '').strip()!r}") from e
    except Exception as e:
        raise ConfigError(f"--config {_where_in(e, path)}: importing the file raised {type(e).__name__}: {e}") from e
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config {path}: the file defines no get_config()")
    try:
        return module.get_config()
    except Exception as e:  # e.g. ConfigDict's type check: c.train.batch_size = 'big'
        raise ConfigError(f"--config {_where_in(e, path)}: get_config() raised {type(e).__name__}: {e}") from e


def _where_in(e: Exception, path: str) -> str:
    """'path:LINE' of the deepest frame of `e`'s traceback in the config file `path` (else `path`)."""
    import traceback

    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == Path(path).resolve()]
    return f"{path}:{lines[-1]}" if lines else path


def _parse_value(text: str, current):
    import ast

    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string, e.g. a path
    return tuple(value) if isinstance(value, list) else value


def apply_overrides(config, overrides: list[str]) -> None:
    """Applies `--config.a.b=value` overrides in place, checking every key.

    Keys must exist in the config, except options of the named model or dataset, which
    may be added (they are checked against the model's / loader's signature), and per-table
    options, `--config.tables.<table>.sharding=contiguous` or
    `--config.tables.<table>.optimizer.name=ftrl` (checked against the tables when built).
    """
    import ml_collections

    from jaxrec.train.config import _suggest, validate

    for arg in overrides:
        m = re.fullmatch(r"--config\.([\w.]+)=(.*)", arg, flags=re.S)
        if not m:
            raise ConfigError(f"cannot parse {arg!r}; expected --config.section.key=value")
        key, text = m.groups()
        parts = key.split(".")
        node = config
        for i, part in enumerate(parts[:-1]):
            if part not in node and parts[0] == "tables" and i > 0:
                node[part] = ml_collections.ConfigDict()
            if part not in node:
                raise ConfigError(f"unknown config key 'config.{key}': {'.'.join(parts[:i]) or 'the config'} has no "
                                  f"{part!r}; valid: {sorted(node.keys())}")
            node = node[part]
        leaf = parts[-1]
        open_section = (len(parts) == 2 and parts[0] in ("model", "dataset", "cross_features")) or (parts[0] == "tables" and len(parts) > 2)
        if leaf not in node and not open_section:
            raise ConfigError(f"unknown config key 'config.{key}'{_suggest(leaf, list(node.keys()))}; valid keys in "
                              f"{'.'.join(parts[:-1]) or 'the config'}: {sorted(node.keys())}")
        try:
            node[leaf] = _parse_value(text, node.get(leaf))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"--config.{key}={text!r}: {e}") from None
    validate(config)


def _parse_train(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser(prog="train.py", description="Train a jaxrec experiment.",
                                     epilog="Override any config key with --config.section.key=value.")
    parser.add_argument("--config", required=True, help="experiment config file (configs/*.py)")
    parser.add_argument("--workdir", help="output dir (checkpoints, metrics.json, tb/); resumes if it has a checkpoint")
    parser.add_argument("--profile", action="store_true", help="write a jax.profiler trace of one train call to <workdir>/profile")
    overrides = [a for a in argv if a.startswith("--config.")]
    args = parser.parse_args([a for a in argv if not a.startswith("--config.")])
    config = load_config_file(args.config)
    apply_overrides(config, overrides)
    return args, config


def metrics_line(m: dict) -> str:
    """One split's metrics for the terminal: 'auc 0.7890  logloss 0.5123  gauc 0.7012  (n=10000)'
    (multi-task: 'like/auc 0.7610  like/logloss ...'); counts and rates left to metrics.json."""
    shown = [k for k in m if k != "count" and not k.endswith(("positive_rate", "mean_prediction"))]
    if "auc" in m:  # binary: its fixed order
        shown = [k for k in ("auc", "logloss", "gauc") if k in m]
    return "  ".join(f"{k} {m[k]:.4f}" for k in shown) + (f"  (n={m['count']})" if "count" in m else "")


def train_main(argv: list[str] | None = None) -> dict:
    """`train.py`: trains the config, prints and returns the final metrics."""
    argv = list(sys.argv if argv is None else argv)
    _setup_logging()
    from jaxrec.train.loop import train_and_evaluate

    try:
        args, config = _parse_train(argv[1:])
        workdir = args.workdir or f"runs/{config.model.name}_{config.dataset.name}_seed{config.seed}"
        result = train_and_evaluate(config, workdir, profile=args.profile)
    except (ConfigError, DataError, TrainingDiverged) as e:
        _fail(e)
    for split in config.eval_splits:
        if split in result:  # (a stream reports its pooled test periods only)
            print(f"{split:5s} {metrics_line(result[split])}")
    if "best_epoch" not in result:
        print(f"{result['units']} units ({result['method']}); metrics in {Path(workdir) / 'metrics.json'}")
        return result
    speed = result["train_examples_per_sec"]
    print(f"best epoch {result['best_epoch']} of {result['epochs_run']}; "
          f"train {speed:,.0f} examples/s; metrics in {Path(workdir) / 'metrics.json'}" if speed else
          f"best epoch {result['best_epoch']} of {result['epochs_run']}; metrics in {Path(workdir) / 'metrics.json'}")
    return result


def eval_overrides(workdir, config, overrides: list[str]):
    """Applies eval.py's `--config.key=value` overrides to a workdir's `config` in place.

    Only keys that cannot change what the checkpoint computes may differ (`workdir.HARMLESS`:
    data locations, evaluation batching ...); any other is a ConfigError naming it. When a data
    location (dataset.path, valid_path, test_path, data_dir) changed, the data read there,
    encoded with the workdir's fitted state, must have the SHA-256 the run recorded
    (`workdir.data_identity`, `<workdir>/run.json`), else DataError: the file moved, it did not
    change. Returns that dataset (to evaluate on, not read twice), or None when no location changed.
    """
    from jaxrec.train import workdir as workdir_lib
    from jaxrec.train.config import build_dataset
    from jaxrec.train.experiment import prepare_data

    for arg in overrides:
        key = re.fullmatch(r"--config\.([\w.]+)=(.*)", arg, flags=re.S)
        if key and key.group(1) not in workdir_lib.HARMLESS:
            raise ConfigError(f"eval.py {arg.split('=')[0]}: a trained run's {key.group(1)} cannot change at evaluation; "
                              f"eval.py may set {sorted(workdir_lib.HARMLESS)}")
    before = json.loads(config.to_json())
    apply_overrides(config, overrides)
    moved = sorted(k for k in workdir_lib.config_differences(before, json.loads(config.to_json())) if k.startswith("dataset."))
    if not moved:
        return None
    run_file = Path(workdir) / workdir_lib.RUN_FILE
    dataset = build_dataset(config, fitted=workdir_lib.saved_fitted(workdir))
    if run_file.is_file():
        was = json.loads(run_file.read_text())
        now = workdir_lib.data_identity(prepare_data(config, dataset)[0])
        if was.get("sha256") != now["sha256"]:
            rows = ", ".join(f"{s} {was.get('rows', {}).get(s, '?')} -> {n}" for s, n in now["rows"].items())
            raise DataError(f"{', '.join(moved)} re-pointed, but the data there is not the data {workdir} was trained on "
                            f"(rows: {rows}; sha256 {str(was.get('sha256'))[:12]} -> {now['sha256'][:12]}); "
                            "point it at the moved files themselves")
    return dataset


def eval_main(argv: list[str] | None = None) -> dict:
    """`eval.py`: evaluates a workdir's checkpoint on a split; prints and writes JSON."""
    import argparse

    argv = list(sys.argv if argv is None else argv)
    _setup_logging()
    from jaxrec.train.experiment import evaluate_checkpoint, load_config

    parser = argparse.ArgumentParser(prog="eval.py", description="Evaluate a checkpoint of a jaxrec workdir.",
                                     epilog="Data moved since training: --config.dataset.path=... (valid_path, test_path, "
                                     "data_dir); the data must be the same (its SHA-256 in <workdir>/run.json).")
    parser.add_argument("--workdir", required=True, help="a workdir written by train.py")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--checkpoint", default="best", choices=["best", "latest"])
    parser.add_argument("--data_dir", help="override dataset.data_dir (data moved since training)")
    parser.add_argument("--output", help="metrics JSON path (default <workdir>/eval_<checkpoint>_<split>.json)")
    parser.add_argument("--export_merged", metavar="OUT", help="LoRA: write a serving workdir OUT whose model has the "
                        "adapters merged into its weights (model.lora_rank=0), then evaluate it")
    parser.add_argument("--export_item_table", metavar="NPY", help="write the best checkpoint's learned item table "
                        "(SASRec's item_embed, [num_items, d], row i = item id i + 1) to NPY, the collaborative item "
                        "vectors of semantic IDs (model.sid_table), then evaluate")
    parser.add_argument("--mesh_shape", help="evaluate on another mesh, e.g. '(4, 1)', or 'none' for one device "
                        "(checkpoints hold logical tables, so any mesh reads them); default: the training mesh")
    args = parser.parse_args([a for a in argv[1:] if not a.startswith("--config.")])
    try:
        config = load_config(args.workdir)
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        if args.data_dir:
            overrides.append(f"--config.dataset.data_dir={args.data_dir}")
        dataset = eval_overrides(args.workdir, config, overrides)
        if args.mesh_shape:
            apply_overrides(config, [f"--config.mesh.shape={'()' if args.mesh_shape == 'none' else args.mesh_shape}"])
        if args.export_merged:
            from jaxrec.train.experiment import export_merged

            args.workdir = str(export_merged(args.workdir, args.export_merged))
            config, dataset = load_config(args.workdir), None
        if args.export_item_table:
            from jaxrec.train.experiment import export_item_table

            export_item_table(args.workdir, args.export_item_table)
        result = evaluate_checkpoint(args.workdir, args.split, args.checkpoint, config, dataset=dataset)
    except (ConfigError, DataError, FileNotFoundError) as e:
        _fail(e)
    out = Path(args.output or Path(args.workdir) / f"eval_{args.checkpoint}_{args.split}.json")
    from jaxrec.distributed import runtime

    if runtime.is_main():
        out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result
