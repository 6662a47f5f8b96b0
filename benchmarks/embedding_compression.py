"""Memory-efficient embeddings: AUC against exact embedding bytes, and AMTL's learned sizes.

    python benchmarks/embedding_compression.py movielens [--seeds 0 1 2]   # user_id and item_id compressed
    python benchmarks/embedding_compression.py synthetic [--seeds 0 1 2]   # a 10^7-value field compressed
    python benchmarks/embedding_compression.py amtl [--seeds 0 1 2]        # AMTL on MovieLens (needs movielens' runs)
    python benchmarks/embedding_compression.py doc                         # rewrite docs/results/embedding_compression.md

Every run is `train.py`'s `train_and_evaluate` on a config (DeepFM, early stopping on valid AUC),
with `tables.<t>.compression` or `tables.<t>.amtl` set; bytes are counted exactly from the
built model's tables (float32; both DeepFM tables of a field, the width-D embedding and the
width-1 linear weights). The methods share each point's memory: binary-code hash embedding
(BH, succession blocks of t bits: the paper's knob) sets the rows; the hashing trick and
double hashing get as many buckets, quotient-remainder the largest m with m + ceil(V/m) rows
or fewer. 'dropped' is the hashing trick with one bucket: the field carries no information,
the floor every method sits between. Lift = AUC - 0.5; 'kept' = lift / the full table's lift.

AMTL (`tables.<t>.amtl` on all ten MovieLens tables) runs from scratch and warm-started from
the movielens part's full-table workdirs (`train.init_from`), over size penalties; memory
saved counts the D-wide tables AMTL masks (the width-1 linear weights are reported apart).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

import common
from jaxrec.data.dataset import LABELS
from jaxrec.data.synthetic import TRUE_PROB
from jaxrec.embedding.compressed import IndexScheme
from jaxrec.train import metrics as metrics_lib
from jaxrec.train.cli import load_config_file
from jaxrec.train.config import build_dataset
from jaxrec.train.experiment import build

PARTS = ("movielens", "synthetic", "amtl")
ML_TABLES = ("user_id", "item_id")
ML_BLOCK_BITS = (9, 7, 5, 3, 1)
SYN_BLOCK_BITS = (20, 18, 17, 16, 15, 14, 13, 12, 8)
SYN_VOCABS = (10_000_000, 100_000, 1_000, 100)
PENALTIES = (0.003, 0.01, 0.03, 0.1)
METHODS = ("binary_code", "hash", "double_hash", "qr")
WORKDIRS = Path(tempfile.gettempdir()) / "jaxrec_embedding_compression"  # the full-table runs AMTL warm-starts from


def ml_config(seed: int, data_dir: str):
    c = load_config_file(str(common.ROOT / "configs" / "deepfm_movielens.py"))
    c.dataset.data_dir, c.seed, c.train.progress_bar = data_dir, seed, False
    return c


def syn_config(seed: int, rows: int):
    c = load_config_file(str(common.ROOT / "configs" / "deepfm_synthetic.py"))
    c.dataset = type(c.dataset)({**c.dataset.to_dict(), "rows": rows, "num_fields": len(SYN_VOCABS),
                                 "vocab_sizes": SYN_VOCABS, "num_interactions": 3, "zipf_exponent": 1.1})
    c.model.hidden = (128, 64)
    c.train.num_epochs, c.train.progress_bar, c.seed = 1, False, seed  # one pass, as over a day of logs
    c.sparse_optimizer.rowwise = True  # a 10^7-row table: update only the touched rows
    c.sparse_optimizer.bias_correction = "row"
    return c


def compression(method: str, vocab: int, rows: int, block_bits: int) -> dict | None:
    """The `tables.<t>.compression` of `method` at BH's memory (None: not possible at that size)."""
    if method == "binary_code":
        return {"kind": "binary_code", "block_bits": block_bits}
    if method in ("hash", "double_hash"):
        return {"kind": method, "buckets": rows}
    m = next((m for m in range(rows - 1, 0, -1) if m + math.ceil(vocab / m) <= rows), None)
    return None if m is None or m * m < vocab else {"kind": "qr", "buckets": m}  # m >= sqrt(V): the quotient side is the small one


def table_bytes(exp, tables) -> int:
    """Exact float32 bytes of `tables` in every embedding layer of the built experiment."""
    return sum(t.rows * t.dim * 4 for layout in exp.layouts.values() for t in layout.specs if t.name in tables)


def grid(make_config, dataset, tables, vocabs: dict, block_bits: tuple, seeds, keep_full: bool = False) -> dict:
    """Full / dropped / every method at every BH size, over seeds; returns the JSON payload."""
    points = []
    for seed in seeds:
        settings = [("full", None, {}), ("dropped", None, {t: {"kind": "hash", "buckets": 1} for t in tables})]
        for t_bits in block_bits:
            bh = {t: IndexScheme("binary_code", vocabs[t], block_bits=t_bits).num_rows for t in tables}
            for method in METHODS:
                comp = {t: compression(method, vocabs[t], bh[t], t_bits) for t in tables}
                if all(comp.values()):
                    settings.append((method, t_bits, comp))
        for method, t_bits, comp in settings:
            c = make_config(seed)
            c.tables = {t: {"compression": v} for t, v in comp.items()}
            exp = build(c, dataset)
            workdir = WORKDIRS / f"full_seed{seed}" if keep_full and method == "full" else None
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            out = common.train_summary(c, exp.dataset, workdir)
            out.update(method=method, block_bits=t_bits, seed=seed, compression=comp, bytes=table_bytes(exp, tables),
                       rows={t: next(s.rows for l in exp.layouts.values() for s in l.specs if s.name == t) for t in tables})
            points.append(out)
            print(f"seed {seed} {method:11s} t={t_bits} rows {out['rows']} bytes {out['bytes']:,}: "
                  f"test auc {out['test']['auc']:.4f}", flush=True)
    full = {t: v for t, v in vocabs.items() if t in tables}
    return {"tables": list(tables), "vocab": full, "seeds": list(seeds), "points": points}


def part_movielens(args) -> dict:
    dataset = build_dataset(ml_config(0, args.data_dir))
    vocabs = {f.name: f.vocab_size for f in dataset.features}
    out = grid(lambda s: ml_config(s, args.data_dir), dataset, ML_TABLES, vocabs, ML_BLOCK_BITS, args.seeds, keep_full=True)
    return {**out, "setup": "DeepFM (configs/deepfm_movielens.py), user_id and item_id compressed"}


def part_synthetic(args) -> dict:
    c = syn_config(0, args.rows)
    dataset = build_dataset(c)
    test = dataset.splits["test"]
    seen = int(np.unique(dataset.splits["train"]["f0"]).size)
    out = grid(lambda s: syn_config(s, args.rows), dataset, ("f0",), {"f0": SYN_VOCABS[0]}, SYN_BLOCK_BITS, args.seeds)
    return {**out, "dataset": c.dataset.to_dict(), "oracle_test_auc": metrics_lib.auc(test[LABELS], test[TRUE_PROB]),
            "f0_distinct_train_ids": seen,
            "setup": f"DeepFM {tuple(c.model.hidden)}, dim {c.model.embed_dim}, 1 epoch, row-wise lazy Adam; field f0 compressed"}


def part_amtl(args) -> dict:
    dataset = build_dataset(ml_config(0, args.data_dir))
    tables = [f.name for f in dataset.features]
    points = []
    for seed in args.seeds:
        source = WORKDIRS / f"full_seed{seed}"
        if not (source / "best").is_dir():
            raise SystemExit(f"{source} is missing: run the movielens part first (its full-table runs are the warm starts)")
        for start in ("scratch", "warm"):
            for penalty in PENALTIES:
                c = ml_config(seed, args.data_dir)
                c.tables = {t: {"amtl": {"size_penalty": penalty}} for t in tables}
                if start == "warm":
                    c.train.init_from = str(source)
                out = common.train_summary(c, dataset)
                full = sum(v["full_bytes"] for v in out["amtl"].values())
                kept = sum(v["bytes"] for v in out["amtl"].values())
                out.update(seed=seed, start=start, penalty=penalty, bytes=kept, full_bytes=full,
                           linear_bytes=sum(f.vocab_size for f in dataset.features) * 4)
                points.append(out)
                print(f"seed {seed} {start} lambda {penalty}: test auc {out['test']['auc']:.4f}, "
                      f"{100 * (1 - kept / full):.0f}% saved", flush=True)
    return {"seeds": list(args.seeds), "tables": tables, "penalties": list(PENALTIES), "points": points}


# ---------------------------------------------------------------------------------------- page


def curve(d: dict) -> dict:
    """`{method: [(t, bytes, mean auc, std, kept, field kept)]}` (full and dropped: one point each):
    kept = (AUC - 0.5) / (full - 0.5); field kept = (AUC - dropped) / (full - dropped), the share
    of what the compressed field itself adds."""
    full = common.mean_std([p["test"]["auc"] for p in d["points"] if p["method"] == "full"])[0]
    dropped = common.mean_std([p["test"]["auc"] for p in d["points"] if p["method"] == "dropped"])[0]
    out = {}
    for p in d["points"]:
        out.setdefault(p["method"], {}).setdefault(p["block_bits"], []).append(p)
    table = {}
    for method, by_t in out.items():
        rows = []
        for t, ps in by_t.items():
            m, s = common.mean_std([p["test"]["auc"] for p in ps])
            rows.append((t, ps[0]["bytes"], m, s, (m - 0.5) / (full - 0.5), (m - dropped) / (full - dropped)))
        table[method] = sorted(rows, key=lambda r: -r[1])
    return table


def compression_section(d: dict, title: str, plot: str) -> list[str]:
    table = curve(d)
    full_bytes = table["full"][0][1]
    lines = [f"## {title}", "", f"Setup: {d['setup']}; {len(d['seeds'])} seeds ({', '.join(map(str, d['seeds']))}); "
             f"compressed: {', '.join(f'{t} ({v:,} values)' for t, v in d['vocab'].items())}.", ""]
    if "oracle_test_auc" in d:
        lines += [f"Data: {d['dataset']['rows']:,} rows, fields of {', '.join(f'{v:,}' for v in d['dataset']['vocab_sizes'])} "
                  f"values, Zipf exponent {d['dataset']['zipf_exponent']}; {d['f0_distinct_train_ids']:,} distinct f0 values "
                  f"in train; Bayes-optimal test AUC {d['oracle_test_auc']:.4f}.", ""]
    lines += ["'lift kept' = (AUC - 0.5) / (full - 0.5), the acceptance measure; 'field lift kept' = (AUC - dropped) / "
              "(full - dropped), the share of what the compressed field itself adds (stricter).", "",
              "| method | t | bytes of the compressed tables | compression | test AUC (mean ± std) | lift kept | field lift kept |",
              "|---|---|---|---|---|---|---|"]
    for method in ("full", *METHODS, "dropped"):
        for t, b, m, s, kept, field in table.get(method, []):
            lines.append(f"| {method} | {t if t is not None else ''} | {b:,} | {full_bytes / b:,.1f}x | {m:.4f} ± {s:.4f} | "
                         f"{100 * kept:.1f}% | {100 * field:.0f}% |")
    bh = {t: (b, m, kept, field) for t, b, m, s, kept, field in table["binary_code"]}
    hashing = {r[0]: r[2] for r in table.get("hash", [])}
    near = sorted(bh, key=lambda t: abs(math.log(full_bytes / bh[t][0] / 100)))[:2]  # the two sizes nearest 100x
    lines += ["", "Nearest 100x: " + "; ".join(
        f"t = {t} ({full_bytes / bh[t][0]:,.0f}x): BH keeps {100 * bh[t][2]:.1f}% of the full table's lift "
        f"({100 * bh[t][3]:.0f}% of the field's own), "
        f"BH - hashing trick = {bh[t][1] - hashing[t]:+.4f} AUC" for t in sorted(near, reverse=True)) + "."]
    for method in ("hash", "double_hash", "qr"):
        wins = [r[0] for r in table.get(method, []) if r[0] in bh and bh[r[0]][1] > r[2]]
        lines += ["", f"BH beats {method} at equal memory at {len(wins)} of {len(table.get(method, []))} sizes "
                      f"(t = {', '.join(map(str, sorted(wins, reverse=True))) or 'none'})."]
    lines += ["", "Quotient-remainder needs at least 2 sqrt(V) rows, so it has no point below that size."]
    lines += ["", f"![AUC against bytes]({plot})", ""]
    return lines


def plot_curve(d: dict, path: Path, title: str) -> None:
    plt = common.pyplot()
    table = curve(d)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method in METHODS:
        rows = table.get(method, [])
        if rows:
            ax.errorbar([r[1] for r in rows], [r[2] for r in rows], yerr=[r[3] for r in rows], marker="o", capsize=3, label=method)
    for method, style in (("full", "k--"), ("dropped", "r:")):
        b, m = table[method][0][1], table[method][0][2]
        ax.axhline(m, color=style[0], linestyle=style[1:], label=f"{method} ({b:,} B)" if method == "full" else "field dropped")
    ax.set_xscale("log")
    ax.set_xlabel("bytes of the compressed tables (log)")
    ax.set_ylabel("test AUC")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def amtl_section(d: dict, full_auc: tuple[float, float]) -> list[str]:
    lines = ["## AMTL: memory saved against AUC (MovieLens-100K)", "",
             f"DeepFM, AMTL on all {len(d['tables'])} tables (`tables.<t>.amtl.size_penalty` = lambda), "
             f"{len(d['seeds'])} seeds. 'warm' starts from the full-table run of the same seed (`train.init_from`); "
             f"the full model's test AUC is {full_auc[0]:.4f} ± {full_auc[1]:.4f}. Saved: 1 - (sum of learned sizes) / "
             f"(values x D) over the D-wide tables; the width-1 linear weights "
             f"({d['points'][0]['linear_bytes']:,} bytes) are not masked and are not counted.", "",
             "| start | lambda | test AUC (mean ± std) | delta vs full | memory saved | bytes kept / full | best epoch |",
             "|---|---|---|---|---|---|---|"]
    for start in ("scratch", "warm"):
        for lam in d["penalties"]:
            ps = [p for p in d["points"] if p["start"] == start and p["penalty"] == lam]
            m, s = common.mean_std([p["test"]["auc"] for p in ps])
            saved = common.mean_std([1 - p["bytes"] / p["full_bytes"] for p in ps])
            lines.append(f"| {start} | {lam:g} | {m:.4f} ± {s:.4f} | {m - full_auc[0]:+.4f} | {100 * saved[0]:.1f}% ± {100 * saved[1]:.1f} "
                         f"| {int(np.mean([p['bytes'] for p in ps])):,} / {ps[0]['full_bytes']:,} | "
                         f"{','.join(str(p['best_epoch']) for p in ps)} |")
    good = []
    for start in ("scratch", "warm"):
        for lam in d["penalties"]:
            ps = [p for p in d["points"] if p["start"] == start and p["penalty"] == lam]
            m, saved = np.mean([p["test"]["auc"] for p in ps]), np.mean([1 - p["bytes"] / p["full_bytes"] for p in ps])
            if saved >= 0.5 and m >= full_auc[0] - 0.002:
                good.append(f"{start} lambda {lam:g} ({100 * saved:.0f}% saved, {m - full_auc[0]:+.4f})")
    lines += ["", f"Settings that save >= 50% with test AUC within 0.002 of the full model: {'; '.join(good) or 'none'}.", "",
              "![AMTL memory against AUC](embedding_amtl.png)", ""]
    return lines


def plot_amtl(d: dict, full_auc: float, path: Path) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for start, marker in (("scratch", "o"), ("warm", "s")):
        xs, ys = [], []
        for lam in d["penalties"]:
            ps = [p for p in d["points"] if p["start"] == start and p["penalty"] == lam]
            xs.append(100 * np.mean([1 - p["bytes"] / p["full_bytes"] for p in ps]))
            ys.append(np.mean([p["test"]["auc"] for p in ps]))
            ax.annotate(f"{lam:g}", (xs[-1], ys[-1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.plot(xs, ys, marker=marker, label=f"AMTL, {start}")
    ax.axhline(full_auc, color="k", linestyle="--", label="full tables")
    ax.axhspan(full_auc - 0.002, full_auc, color="0.9", label="within 0.002")
    ax.set_xlabel("embedding memory saved (%)")
    ax.set_ylabel("test AUC")
    ax.set_title("AMTL on MovieLens-100K (labels: size penalty)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_doc() -> None:
    data = {p: json.loads(f.read_text()) for p in PARTS if (f := common.RESULTS / f"embedding_compression_{p}.json").is_file()}
    lines = ["# Memory-efficient embeddings: binary-code hash embedding, baselines, AMTL", "",
             "Generated by `benchmarks/embedding_compression.py` (module docstring: the protocol). Commands and machines:", ""]
    for part, d in data.items():
        lines.append(f"- {part}: `{d['command']}` on {common.machine_line(d['machine'])}")
    lines.append("")
    if "synthetic" in data:
        plot_curve(data["synthetic"], common.DOCS / "embedding_compression_synthetic.png", "a 10^7-value field, compressed")
        lines += compression_section(data["synthetic"], "AUC against memory: a 10^7-value field (synthetic)",
                                     "embedding_compression_synthetic.png")
    if "movielens" in data:
        plot_curve(data["movielens"], common.DOCS / "embedding_compression_movielens.png", "MovieLens-100K: user_id and item_id")
        lines += compression_section(data["movielens"], "AUC against memory: MovieLens-100K", "embedding_compression_movielens.png")
    if "amtl" in data:
        full = common.mean_std([p["test"]["auc"] for p in data["movielens"]["points"] if p["method"] == "full"])
        plot_amtl(data["amtl"], full[0], common.DOCS / "embedding_amtl.png")
        lines += amtl_section(data["amtl"], full)
    common.write_page("embedding_compression.md", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=PARTS + ("doc",))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=2_000_000, help="synthetic rows")
    parser.add_argument("--data_dir", default=common.default_data_dir())
    args = parser.parse_args()
    if args.part != "doc":
        WORKDIRS.mkdir(parents=True, exist_ok=True)
        payload = {"part_movielens": part_movielens, "part_synthetic": part_synthetic, "part_amtl": part_amtl}[f"part_{args.part}"](args)
        payload.update(command=common.command(), machine=common.machine())
        common.write_json(f"embedding_compression_{args.part}", payload)
    write_doc()


if __name__ == "__main__":
    main()
