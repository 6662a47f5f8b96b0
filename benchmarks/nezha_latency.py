"""NEZHA's one-pass decoding against TIGER-style constrained beam search (KV cache): latency per request.

    python benchmarks/nezha_latency.py [--repeats 5] [--items 1682] [--codebook 32] [--history 50]

Synthetic and weight-independent (random weights do the same work as trained ones): M = 1,682
items (MovieLens-100K's catalogue size) with distinct random codes of L = 3 levels of K = 32,
histories of 50 items (prompt P = 1 + 50 x 3 = 151 tokens), one GPT backbone (width 128, depth 4,
4 heads: the spec's Flax plan) shared by both methods' shapes:

- TIGER: `jaxrec.generate.nezha.tiger_beam_search`: prefill over the prompt, then one single-token
  decoder step per level over B x W hypotheses (KV cache), the hash-set verifier as the
  logits processor;
- NEZHA: `nezha_beam_search`: one backbone forward over prompt + L placeholders, then beam search
  inside the MTP head (top-k = K per beam), the same verifier on code indices.

Beams 10, 20, 50 and W = K = 32 (the paper's setting: beam = top-k = the codebook size of a level),
batch 1 and 64. Each configuration is compiled once (first call not counted); a repeat times one
call of each method in turn (interleaved: the shared machine's drift hits both); latency per
request = call seconds / B; the page reports the median over repeats and each repeat's ratio.

Cost model (token-forwards per request through the decoder): TIGER = P + W L (prefill, then L
steps of W single tokens; the loop's L-th step is computed and discarded), NEZHA = P + L; the
head adds W K L dot products of width D per request (no decoder call).

Rule fixed before the run (issue 22): NEZHA's latency per request is >= 5x lower than TIGER's
at beam = K (batch 1 and batch 64 separately), in every repeat (`every_repeat`). Beam 20 is
reported, no claim. Quality (HR@10 >= 0.95x TIGER's) needs trained models on MovieLens: not
measured here (a row says so). No data split is read (synthetic prompts), so the test-read
ledger stays empty.

Writes benchmarks/results/nezha_latency.json and docs/results/nezha_latency.md.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import common
from jaxrec.generate.nezha import nezha_beam_search, sid_verifier, tiger_beam_search
from jaxrec.models.generative import SIDVocab, make_nezha, make_tiger

TARGET = 5.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--items", type=int, default=1682)
    p.add_argument("--codebook", type=int, default=32)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--history", type=int, default=50)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--beams", default="10,20,50")
    p.add_argument("--batches", default="1,64")
    a = p.parse_args()

    rng = np.random.default_rng(0)
    vocab = SIDVocab((a.codebook,) * a.levels)
    flat = rng.choice(a.codebook ** a.levels, a.items, replace=False)
    items = np.stack([(flat // a.codebook ** i) % a.codebook for i in range(a.levels)], axis=1)
    verifier = sid_verifier(vocab, items)
    gpt = dict(width=a.width, depth=a.depth, num_heads=4)
    tiger, nezha = make_tiger(vocab, a.history, **gpt), make_nezha(vocab, a.history, **gpt)
    beams = sorted({int(b) for b in a.beams.split(",")} | {a.codebook})
    batches = [int(b) for b in a.batches.split(",")]
    prompt_len = 1 + a.history * a.levels
    rows = []
    for batch in batches:
        hist = [list(rng.integers(0, a.items, a.history)) for _ in range(batch)]
        prompts = vocab.history(items, hist, a.history)
        init = {"tokens": jnp.asarray(prompts), "codes": jnp.asarray(items[:1].repeat(batch, 0))}
        tv, nv = tiger.init(jax.random.key(0), init), nezha.init(jax.random.key(0), init)
        for w in beams:
            run_t = lambda: tiger_beam_search(tiger, tv, prompts, vocab, w, verifier).codes
            run_n = lambda: nezha_beam_search(nezha, nv, prompts, verifier, w).codes
            compile_t, compile_n = common.timed(run_t), common.timed(run_n)
            t_times, n_times = [], []
            for _ in range(a.repeats):
                t_times.append(common.timed(run_t) / batch)
                n_times.append(common.timed(run_n) / batch)
            ratios = [t / n for t, n in zip(t_times, n_times)]
            row = dict(batch=batch, beam=w, tiger_ms=1e3 * float(np.median(t_times)),
                       nezha_ms=1e3 * float(np.median(n_times)), ratios=ratios, speedup=float(np.median(ratios)),
                       tiger_token_forwards=prompt_len + w * a.levels, nezha_token_forwards=prompt_len + a.levels,
                       tiger_decoder_calls=1 + a.levels, nezha_decoder_calls=1,
                       compile_s=dict(tiger=compile_t, nezha=compile_n))
            rows.append(row)
            print(f"batch {batch:3d} beam {w:3d}: TIGER {row['tiger_ms']:8.2f} ms/req, NEZHA {row['nezha_ms']:8.2f} "
                  f"ms/req, speed-up {row['speedup']:.1f}x (repeats {', '.join(f'{r:.1f}' for r in ratios)})",
                  flush=True)

    m = common.machine()
    claims = []
    for batch in batches:
        r = next(r for r in rows if r["batch"] == batch and r["beam"] == a.codebook)
        v = common.verdict(r["ratios"], [TARGET] * len(r["ratios"]), "every_repeat", side="greater")
        claims.append(common.claim_row(f"NEZHA >= 5x lower latency per request than constrained beam search "
                                       f"(KV cache), beam = top-k = K = {a.codebook}, batch {batch}",
                                       f"{r['speedup']:.1f}x median ({r['tiger_ms']:.2f} vs {r['nezha_ms']:.2f} ms)", v))
    claims.append(common.claim_row("NEZHA HR@10 >= 0.95x the constrained beam search of the same backbone",
                                   "needs trained models on MovieLens (the lead's integration); not measured here", None))
    common.write_json("nezha_latency", dict(command=common.command(), machine=m, args=vars(a), rows=rows,
                                            prompt_tokens=prompt_len, target=TARGET))
    lines = ["# NEZHA one-pass decoding vs constrained beam search: latency per request", "",
             f"Command: `{common.command()}`  ", f"Machine: {common.machine_line(m)}", "",
             f"Synthetic: {a.items} items with distinct random codes, L = {a.levels} levels of K = {a.codebook}; "
             f"histories of {a.history} items (P = {prompt_len} prompt tokens); one GPT backbone (width {a.width}, "
             f"depth {a.depth}, 4 heads), random weights (the work does not depend on them). Median of "
             f"{a.repeats} interleaved repeats, compilation excluded. The machine is shared (2 cores, other jobs "
             "running): absolute times are noisy, the interleaved ratios less so.", "",
             "## Cost model", "",
             "Token-forwards per request through the decoder: constrained beam search (TIGER, KV cache) runs a "
             "prefill over the P prompt tokens and then L single-token steps over the W beams: P + W L "
             "(the L-th step's forward is computed and discarded by the loop); NEZHA runs one forward over "
             "P + L tokens (prompt + placeholders) and then only its head: W x K logits of width D per level "
             "plus W RNN-cell updates, no decoder call. So the gap grows with W: at small W the shared prefill "
             "dominates both, at W = K the W L decoder steps (each reading the whole KV cache) dominate TIGER.", "",
             "| batch | beam W | TIGER ms / request | NEZHA ms / request | speed-up (median) | repeats | "
             "decoder calls (TIGER / NEZHA) | token-forwards per request (TIGER / NEZHA) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['beam']} | {r['tiger_ms']:.2f} | {r['nezha_ms']:.2f} | {r['speedup']:.1f}x | "
                     f"{', '.join(f'{x:.1f}' for x in r['ratios'])} | {r['tiger_decoder_calls']} / "
                     f"{r['nezha_decoder_calls']} | {r['tiger_token_forwards']} / {r['nezha_token_forwards']} |")
    lines += ["", "Rule fixed before the run: at beam = K, every repeat's ratio TIGER / NEZHA >= 5 (batch 1 and 64 "
              "separately). Beam 20 is where the gap is smaller (fewer decoder steps to save).", ""]
    common.write_page("nezha_latency.md", lines + common.claims_table(claims))


if __name__ == "__main__":
    main()
