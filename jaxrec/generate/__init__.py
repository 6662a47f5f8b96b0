"""Generation with a KV cache: greedy, sampling and beam search over `jaxrec.models.text.GPT`,
and constrained decoding through a `logits_processor` hook (prefix trie, NEZHA hash set, VALUE
weighted trie).

    import jax
    from jaxrec.models.text.gpt import GPT
    from jaxrec.generate import generate, beam_search, TrieConstraint, HashSetConstraint

    model = GPT(vocab_size=64, width=32, depth=2, num_heads=2, max_len=32)
    variables = model.init(jax.random.key(0), {"tokens": jax.numpy.zeros((1, 8), int)})
    prompts = [[5, 6, 7], [9]]                                  # ragged: left-padded inside

    out = generate(model, variables, prompts, 10, eos_id=1)     # greedy -> out.tokens [2, 10]
    out = generate(model, variables, prompts, 10, key=jax.random.key(1), temperature=0.8, top_p=0.9)

    trie = TrieConstraint.build([[10, 11, 12], [10, 13, 14], [20, 21, 22]], model.vocab_size)
    beams = beam_search(model, variables, prompts, 3, beam_width=4, logits_processor=trie)
    beams.sequences    # [2, 4, 3], only allowed sequences (score -inf marks a filler: < 4 allowed)
    beams.scores       # [2, 4] log-probabilities, best first

    # semantic IDs (NEZHA): codes (c1, c2, c3) in [0, K), token of level i = i * K + c
    sids = HashSetConstraint.build([[1, 2, 3], [1, 0, 2]], codebook_size=16)

Modules: `decode` (the loops, host-side prompt checks, sampling functions), `constraints`
(the processor protocol and the constraints), `scoring` (teacher-forced log-probabilities of
given continuations, optionally under a processor: what DPO and GFlowNet losses train on). Everything jits with static shapes; a processor's
arrays are arguments, so new values (`WeightedTrieConstraint.with_values`) do not recompile.
"""

from jaxrec.generate.constraints import (Chain, DecodeState, FunctionProcessor, HashSetConstraint, LogitsProcessor,
                                         Trie, TrieConstraint, WeightedTrieConstraint, as_processor, build_trie)
from jaxrec.generate.decode import (Beams, Generation, beam_search, generate, prepare_prompts, sample_logits,
                                    top_k_mask, top_p_mask)
from jaxrec.generate.scoring import sequence_logprob, token_logprobs

__all__ = ["Beams", "Chain", "DecodeState", "FunctionProcessor", "Generation", "HashSetConstraint", "LogitsProcessor",
           "Trie", "TrieConstraint", "WeightedTrieConstraint", "as_processor", "beam_search", "build_trie", "generate",
           "prepare_prompts", "sample_logits", "sequence_logprob", "token_logprobs", "top_k_mask", "top_p_mask"]
