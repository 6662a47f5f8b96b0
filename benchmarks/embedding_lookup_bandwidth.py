"""Embedding lookup + pool bandwidth (GB/s of rows read) as a fraction of copy bandwidth, both
measured in the same run, interleaved.

    python benchmarks/embedding_lookup_bandwidth.py [--rows 1e6 1e7] [--dims 64] [--repeats 15]

Workload: a `[V, D]` float32 table, ids `[4096, 26]` drawn uniformly, each sample's 26 rows
summed into one `[D]` vector (a 26-id bag per sample). Bytes read = 4096 * 26 * D * 4, counted
once. Every repeat draws fresh ids (so no repeat finds the previous repeat's rows in cache),
and every timed call of an implementation sits between two copy measurements: `numpy.copyto`
of a 256 MiB float32 array (8x the last-level cache), copy bandwidth = 256 MiB / the mean
time of the two. The figure of a call is its ratio `gather GB/s / copy GB/s` against those
adjacent copies, so load
on the (shared) machine hits both sides of the ratio; the order of the implementations
rotates from repeat to repeat. Reported per table size and implementation: the median, the
interquartile range and the min/max of the ratio over the repeats, and the medians in GB/s.

Implementations (all on the same ids in a repeat):

  * `embedding_bag`       `pallas_kernels.embedding_bag` with every bag full (26 ids), its
                          default implementation (on CPU the XLA path `_xla_forward`), on the
                          table as XLA allocated it (4 KiB pages on Linux);
  * `embedding_bag_2mb`   the same op on the same values after `advise_huge_pages` (the table's
                          buffer backed by 2 MiB transparent huge pages, collapsed once before
                          the timing);
  * `embedding_bag_before` the XLA path as it was before issue 20 (`bag_before`: filled
                          gathers, positions fully unrolled), on the table as allocated;
  * `xla_2d`              a plain jnp gather of the `[B, 26]` ids then a sum over the 26 (the
                          naive formulation, for comparison);
  * `numpy_take`          `numpy.take` of the rows alone, no pooling, on the 2 MiB-page table
                          (numpy backs its own large arrays with huge pages by default, so this
                          is numpy as it runs on its own arrays; a host peer, not a jaxrec path).

Claims (rules fixed before the run, `common.RULES`; thresholds from issue 20): at 10^7 x 64
the default `embedding_bag` and `embedding_bag_2mb` each reach >= 40% of copy bandwidth
(`paired_t` over repeats against 0.40); the old page's "67% of copy bandwidth at 10^6 x 64"
(`paired_t` against 0.67); `embedding_bag` faster than `embedding_bag_before` at 10^6 and 10^7
x 64 (`paired_t` on the paired ratios); `embedding_bag_2mb` >= `numpy_take` at 10^7 x 64
(`every_repeat` on the paired ratios).

Writes benchmarks/results/embedding_lookup_bandwidth.json and
docs/results/embedding_lookup_bandwidth.md.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import common
from pallas_kernels.embedding_bag import advise_huge_pages, embedding_bag

BATCH, FIELDS = 4096, 26
COPY_BYTES = 1 << 28
IMPLS = ("embedding_bag", "embedding_bag_2mb", "embedding_bag_before", "xla_2d", "numpy_take")
TARGET = 0.40      # issue 20: the 10^7 x 64 case at >= 40% of copy bandwidth
OLD_CLAIM = 0.67   # the previous page's figure at 10^6 x 64


def bag_before(table: jax.Array, ids: jax.Array) -> jax.Array:
    """`embedding_bag`'s XLA path as it was before issue 20, for full bags: filled `jnp.take` per
    position, the loop over positions fully unrolled. Kept to measure the change in the same run."""
    from pallas_kernels.embedding_bag import _valid_mask

    valid = _valid_mask(ids, jnp.full((ids.shape[0],), ids.shape[1], jnp.int32), table.shape[0])
    safe = jnp.where(valid, ids, 0)

    def add_position(l, acc):
        rows = jnp.take(table, safe[:, l], axis=0).astype(jnp.float32)
        return acc + jnp.where(valid[:, l, None], rows, 0.0)

    L = ids.shape[1]
    return jax.lax.fori_loop(0, L, add_position, jnp.zeros((ids.shape[0], table.shape[1]), jnp.float32),
                             unroll=max(1, min(L, 64))).astype(table.dtype)


def copy_gbs(src: np.ndarray, dst: np.ndarray) -> float:
    """GB/s of one `numpy.copyto(dst, src)` (bytes of `src` / time)."""
    tic = time.perf_counter()
    np.copyto(dst, src)
    return src.nbytes / (time.perf_counter() - tic) / 1e9


def timed_gbs(fn, nbytes: int) -> float:
    tic = time.perf_counter()
    fn()
    return nbytes / (time.perf_counter() - tic) / 1e9


def spread(xs) -> dict:
    """Median, quartiles and range of a list of figures."""
    xs = np.asarray(xs, float)
    q25, med, q75 = np.percentile(xs, [25, 50, 75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "min": float(xs.min()), "max": float(xs.max())}


def measure(rows: int, dim: int, repeats: int, rng: np.random.Generator, src: np.ndarray, dst: np.ndarray) -> dict:
    """Interleaved copy/gather repeats at one table size: {impl: per-repeat records}."""
    bag = jax.jit(lambda t, i: embedding_bag(t, i, jnp.full((i.shape[0],), i.shape[1], jnp.int32), "sum"))
    xla_2d = jax.jit(lambda t, i: jnp.take(t, i, axis=0).sum(1))
    bag_old = jax.jit(bag_before)
    table = jax.random.normal(jax.random.key(rows + dim), (rows, dim), jnp.float32).block_until_ready()
    table_2mb = (table + 0.0).block_until_ready()                # its own buffer, same values
    tic = time.perf_counter()
    advised = advise_huge_pages(table_2mb)
    print(f"  advise_huge_pages: {advised / 2**20:,.0f} MiB in {time.perf_counter() - tic:.1f} s", flush=True)
    table_np = np.asarray(table_2mb)
    nbytes = BATCH * FIELDS * dim * 4
    runs = {name: [] for name in IMPLS}
    for r in range(-1, repeats):                                  # r = -1: compile and warm, not kept
        ids_np = rng.integers(0, rows, (BATCH, FIELDS)).astype(np.int32)
        ids = jnp.asarray(ids_np)
        fns = {
            "embedding_bag": lambda: bag(table, ids).block_until_ready(),
            "embedding_bag_2mb": lambda: bag(table_2mb, ids).block_until_ready(),
            "embedding_bag_before": lambda: bag_old(table, ids).block_until_ready(),
            "xla_2d": lambda: xla_2d(table, ids).block_until_ready(),
            "numpy_take": lambda: np.take(table_np, ids_np.reshape(-1), axis=0),
        }
        order = IMPLS[r % len(IMPLS):] + IMPLS[:r % len(IMPLS)]
        for name in order:
            if r < 0:
                fns[name]()
                continue
            before = copy_gbs(src, dst)
            gbs = timed_gbs(fns[name], nbytes)
            after = copy_gbs(src, dst)
            copy = 2 / (1 / before + 1 / after)                   # bytes / mean time of the two copies
            runs[name].append({"gb_per_s": gbs, "copy_gb_per_s": copy, "copy_before_after": [before, after],
                               "ratio": gbs / copy, "load1": os.getloadavg()[0]})
    del table, table_2mb, table_np
    return {"advised_bytes": advised, "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=float, nargs="+", default=[1e6, 1e7])
    p.add_argument("--dims", type=int, nargs="+", default=[64])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--no_doc", action="store_true")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    src = np.ones(COPY_BYTES // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    load_start = os.getloadavg()
    results = []
    for rows in [int(r) for r in args.rows]:
        for dim in args.dims:
            print(f"rows {rows:,} dim {dim}", flush=True)
            m = measure(rows, dim, args.repeats, rng, src, dst)
            for name in IMPLS:
                runs = m["runs"][name]
                ratio = spread([x["ratio"] for x in runs])
                row = {"rows": rows, "dim": dim, "impl": name, "ratio": ratio,
                       "gb_per_s_median": float(np.median([x["gb_per_s"] for x in runs])),
                       "copy_gb_per_s_median": float(np.median([x["copy_gb_per_s"] for x in runs])),
                       "advised_bytes": m["advised_bytes"] if name in ("embedding_bag_2mb", "numpy_take") else 0,
                       "repeats": runs}
                results.append(row)
                print(f"  {name:18s} {row['gb_per_s_median']:6.2f} GB/s, {ratio['median']:.0%} of copy "
                      f"(IQR {ratio['q25']:.0%}-{ratio['q75']:.0%}, range {ratio['min']:.0%}-{ratio['max']:.0%})", flush=True)
    payload = {"benchmark": "embedding_lookup_bandwidth", "command": common.command(), "machine": common.machine(),
               "batch": BATCH, "fields": FIELDS, "copy_bytes": COPY_BYTES, "repeats": args.repeats,
               "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg()),
               "claims": claims(results), "results": results}
    print(f"wrote {common.write_json('embedding_lookup_bandwidth', payload)}")
    if not args.no_doc:
        write_doc(payload)


def _ratios(results: list[dict], rows: int, dim: int, impl: str) -> list[float] | None:
    for r in results:
        if (r["rows"], r["dim"], r["impl"]) == (rows, dim, impl):
            return [x["ratio"] for x in r["repeats"]]
    return None


def claims(results: list[dict]) -> list[dict]:
    """The claims table's rows (verdicts under the rules stated in the module docstring)."""
    rows = []

    def fig(xs):
        s = spread(xs)
        return f"median {s['median']:.0%} (IQR {s['q25']:.0%}-{s['q75']:.0%}, range {s['min']:.0%}-{s['max']:.0%})"

    for impl, what in (("embedding_bag", "`embedding_bag` (default, table as allocated)"),
                       ("embedding_bag_2mb", "`embedding_bag` on a table on 2 MiB pages")):
        xs = _ratios(results, 10**7, 64, impl)
        v = common.verdict(xs, [TARGET] * len(xs), rule="paired_t", side="greater") if xs else None
        rows.append(common.claim_row(f"{what} reaches >= {TARGET:.0%} of copy bandwidth at 10^7 x 64 (issue 20)",
                                     fig(xs) if xs else "10^7 x 64 not run", v, "met", "not met"))
    xs = _ratios(results, 10**6, 64, "embedding_bag")
    v = common.verdict(xs, [OLD_CLAIM] * len(xs), rule="paired_t", side="greater") if xs else None
    rows.append(common.claim_row(f"`embedding_bag` reaches {OLD_CLAIM:.0%} of copy bandwidth at 10^6 x 64 (previous page)",
                                 fig(xs) if xs else "10^6 x 64 not run", v))
    for rows_ in (10**6, 10**7):
        a, b = _ratios(results, rows_, 64, "embedding_bag"), _ratios(results, rows_, 64, "embedding_bag_before")
        v = common.verdict(a, b, rule="paired_t", side="greater") if a and b else None
        rows.append(common.claim_row(f"this change: `embedding_bag` faster than its previous XLA path at {rows_:,} x 64",
                                     f"ratio difference {common.fmt_diffs(v, 2)}" if v else "not run", v, "met", "not met"))
    a, b = _ratios(results, 10**7, 64, "embedding_bag_2mb"), _ratios(results, 10**7, 64, "numpy_take")
    v = common.verdict(a, b, rule="every_repeat", side="greater") if a and b else None
    rows.append(common.claim_row("`embedding_bag` on 2 MiB pages is at least as fast as `numpy.take` (no pooling) at 10^7 x 64",
                                 f"ratio difference {common.fmt_diffs(v, 2)}" if v else "10^7 x 64 not run", v, "met", "not met"))
    return rows


def write_doc(payload: dict) -> None:
    m = payload["machine"]
    l0, l1 = payload["loadavg_start"], payload["loadavg_end"]
    lines = [
        "# Embedding lookup + pool bandwidth",
        "",
        f"Generated by `{payload['command']}`.",
        f"Machine: {common.machine_line(m)}. Load average (1/5/15 min) {l0[0]:.1f}/{l0[1]:.1f}/{l0[2]:.1f} at the start, "
        f"{l1[0]:.1f}/{l1[1]:.1f}/{l1[2]:.1f} at the end (the host is shared: that is why the copy bandwidth is measured "
        "next to every gather).",
        "",
        f"Batch {payload['batch']} x {payload['fields']} uniform ids, fresh every repeat, into a `[V, D]` float32 table, each "
        "sample's rows summed; bytes of rows read per second, as a fraction of the copy bandwidth measured right before "
        f"and after each call (`numpy.copyto` of {payload['copy_bytes'] >> 20} MiB, mean time of the two). {payload['repeats']} repeats per cell, the order of the "
        "implementations rotating. `embedding_bag_2mb` is the same op on the same values with the table's buffer on 2 MiB "
        "pages (`advise_huge_pages`); `numpy_take` gathers without pooling from that buffer and is a host peer, not a jaxrec path.",
        "",
        "| rows | dim | impl | GB/s (median) | copy GB/s (median) | of copy: median | IQR | min-max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        q = r["ratio"]
        lines.append(f"| {r['rows']:,} | {r['dim']} | {r['impl']} | {r['gb_per_s_median']:.2f} | {r['copy_gb_per_s_median']:.2f} | "
                     f"{q['median']:.0%} | {q['q25']:.0%}-{q['q75']:.0%} | {q['min']:.0%}-{q['max']:.0%} |")
    lines += ["", *why(payload), ""]
    lines += common.claims_table(payload["claims"])
    common.write_page("embedding_lookup_bandwidth.md", lines)


def why(payload: dict) -> list[str]:
    """What the page says about the largest table (every figure from the payload)."""
    big = max(r["rows"] for r in payload["results"])
    cells = {(r["dim"], r["impl"]): r["ratio"]["median"] for r in payload["results"] if r["rows"] == big}
    dims = sorted({d for d, _ in cells})
    d = 64 if 64 in dims else dims[-1]
    table_bytes = big * d * 4
    cmp = ", ".join(f"`{impl}` {cells[(d, impl)]:.0%}" for impl in IMPLS if (d, impl) in cells)
    return [
        f"## Why {big:,} rows is slower than the smaller table",
        "",
        f"At {big:,} x {d} the table is {table_bytes / 1e9:.2f} GB; each bag row is a random {d * 4}-byte read, and on 4 KiB pages",
        f"each also needs a page-table walk whose entries no longer fit in the caches ({table_bytes // 4096:,} pages). Backing the",
        "table with 2 MiB pages removes most of those walks. Medians of the ratio to copy bandwidth at this size: " + cmp + ".",
        "`pallas_kernels.embedding_bag.advise_huge_pages(table)` does it for one buffer (Linux `madvise(MADV_HUGEPAGE)`,",
        "then `MADV_COLLAPSE`; a no-op elsewhere); for every large buffer of a process, start it with",
        "`GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc >= 2.35): the allocator XLA uses then asks for transparent huge",
        "pages. A buffer donated and updated in place keeps its pages; a fresh buffer (a non-donated update) starts on",
        "4 KiB pages again unless the tunable is set.",
        "",
        *target_note(payload, big, d, cells),
        "",
        "The XLA path (`_xla_forward`) gathers one bag position at a time into a running `[B, D]` float32 sum with",
        "`promise_in_bounds` gathers (the ids are made safe first), its loop over positions unrolled by row width",
        "(`WIDE_ROW`, `XLA_UNROLL_WIDE`; the measurement behind the choice is in the comment above them).",
    ]


def target_note(payload: dict, big: int, d: int, cells: dict) -> list[str]:
    """Whether the 40% target was met at the largest table and, if not, what the same run says about why."""
    met = [c for c in payload["claims"] if c["claim"].startswith("`embedding_bag` on a table on 2 MiB") and c["verdict"] == "met"]
    bag, bag2, peer = (cells.get((d, k)) for k in ("embedding_bag", "embedding_bag_2mb", "numpy_take"))
    load = payload["loadavg_start"][0], payload["loadavg_end"][0]
    if met:
        return [f"On 2 MiB pages the {big:,} x {d} case meets the {TARGET:.0%} target in this run (claims below)."]
    lines = [f"**The {TARGET:.0%} target at {big:,} x {d} is not met in this run** (claims below). What the same run says about why:"]
    if bag is not None and bag2 is not None:
        lines.append(f"4 KiB page walks: `embedding_bag` reaches {bag:.0%} on the table as allocated and {bag2:.0%} on 2 MiB pages "
                     f"({(bag2 - bag) * 100:+.0f} points);")
    if peer is not None and bag2 is not None:
        lines.append(f"and `numpy.take`, which only copies the rows (no pooling) from the same 2 MiB-page buffer, reaches {peer:.0%}:"
                     f" {'below' if peer < TARGET else 'above'} the target too, so the rest of the gap "
                     f"{'is shared by the plain host gather, not particular to the jaxrec path' if peer < TARGET else 'is particular to the XLA path'}.")
    lines.append(f"Our reading: random {d * 4}-byte reads are bound by memory latency and by the CPU time this process gets, unlike a streaming copy; "
                 f"the load average was {load[0]:.1f} at the start and {load[1]:.1f} at the end on {payload['machine']['cores']} cores.")
    return lines


if __name__ == "__main__":
    main()
