"""GFlowGR: GFlowNet fine-tuning of a generative recommender (arXiv 2506.16114, spec section 2).

The paper's method section could not be read; what follows is the spec's reading, and every
choice marked [I] is inferred (each is a config field of `GFlowGRConfig`).

Trajectories. For a user context u (the prompt: the history as SID tokens) an item x is generated
as its L semantic-ID tokens, s_0 = u -> s_1 = (u, c_1) -> ... -> s_L = (u, c_1..c_L). The states
form a tree (P_B = 1), and the forward policy is the generator's softmax restricted to the valid
children and renormalised (`jaxrec.generate.scoring.token_logprobs` under the hash-set verifier):

    log P_F(x | u) = sum_{k=1..L} log P_F(c_k | u, c_{<k})

Reward (spec; the weights are [I]):

    R(u, x) = eps + r_pos * 1[x = the ground-truth next item] + lambda * sigmoid(s_CTR(u, x))

with s_CTR a trained CTR model's logit (the caller's `ctr_logit(users [B], items [B, K]) -> [B, K]`,
a DeepFM in the benchmark). `eps > 0` keeps log R finite.

Objectives over K trajectories x_1..x_K per user (per-trajectory losses averaged with weights w):

    TB        (log Z(u) + log P_F(x | u) - log R(u, x))^2                       (default)
    SubTB     sum_{i<j} lam^(j-i) (log F(s_i) + sum_{k=i+1..j} log P_F(c_k|.) - log F(s_j))^2 / sum lam^(j-i),
              log F(s_0) = log Z(u), log F(s_L) = log R(u, x), log F(s_k) a flow head on the state's
              hidden state (token-level supervision)
    SFT       no trajectory term (continued supervised training)
    DPO       -log sigmoid(beta [(log pi(y+) - log pi_ref(y+)) - (log pi(y-) - log pi_ref(y-))]),
              y+ the ground truth, y- an on-policy sample (a sample equal to y+ is dropped),
              pi_ref the frozen starting model, pi the constrained P_F
    REINFORCE -(R(u, x) - mean_K R(u, .)) log P_F(x | u) over on-policy samples only (the mean
              over the user's K samples is the baseline, held constant)

and every objective adds `sft_weight` x the cross-entropy of the ground truth over the full
vocabulary (TIGER's own loss: -sum_k log softmax(z_k)[c_k]) as the spec's stability term; the
baselines get the same term, so they differ from GFlowGR only in the trajectory loss [I].

log Z(u): `LogZHead`, an MLP on the pooled prompt hidden state (`GPT.hidden` at the last prompt
token, or the mean over the prompt), by default without gradient into the backbone [I]; or one
learned scalar (`log_z='scalar'`).

Heuristic weighting [I] ("heuristic weighting" is the abstract's phrase; the spec's reading scales
each trajectory's loss by its reward rank): within a user's K trajectories, the one of rank
r (0 = lowest reward) gets w = 1 + gamma r / (K - 1) ('rank'), or w proportional to R ('reward'),
or w = 1 ('none'); weights are rescaled to mean 1 over the batch.

Adaptive trajectory sampler. K slots per user: slot 0 holds the ground truth (`include_positive`),
the next n_cf slots the conventional recommender's top candidates in order (SASRec's top-K,
passed as `cf_items [B, K_cf]`), the rest on-policy samples (`jaxrec.generate.generate`'s loop at
`temperature`, under the verifier). With m = K - include_positive non-positive slots,

    n_cf = round(share * m),
    share = cf_start                                                 ('constant')
          = cf_start + (cf_end - cf_start) min(step / total_steps, 1)   ('linear', the default)
          = that linear share x c(u)                                    ('confidence')

where c(u) in [0, 1] is the CF model's confidence for u (the benchmark uses its softmax
probability of its own top item, divided by the batch maximum) [I]. So "adaptive" means the
mix moves from the CF model's candidates towards the policy's own samples as training proceeds
(and, with 'confidence', leans on the CF model where it is sure).

Shapes: B users, K trajectories per user, L levels, P prompt tokens, D backbone width.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec.errors import ConfigError
from jaxrec.generate.decode import _generate
from jaxrec.generate.scoring import token_logprobs
from jaxrec.losses.gflownet import subtrajectory_balance, trajectory_balance
from jaxrec.losses.preference import dpo_loss
from jaxrec.models.text.gpt import GPT
from jaxrec.nn.transformer import decode_mask, valid_positions

OBJECTIVES = ("tb", "subtb", "sft", "dpo", "reinforce")
SCHEDULES = ("constant", "linear", "confidence")
WEIGHTINGS = ("none", "rank", "reward")
POOLS = ("last", "mean")
POLICY, POSITIVE, CF = 0, 1, 2  # trajectory sources


@dataclasses.dataclass(frozen=True)
class GFlowGRConfig:
    """Every choice of the module docstring. Fields:

    objective: 'tb' | 'subtb' | 'sft' | 'dpo' | 'reinforce'.
    eps, r_pos, lam: the reward's epsilon, positive bonus and CTR weight.
    weighting, weight_gamma: the heuristic weighting ('none' | 'rank' | 'reward') and its slope.
    num_samples: K trajectories per user. include_positive: slot 0 is the ground truth.
    schedule, cf_start, cf_end, total_steps: the sampler's CF share (module docstring).
    temperature: on-policy sampling temperature.
    sft_weight: the cross-entropy term on the positive. subtb_lambda: SubTB's lambda.
    dpo_beta: DPO's beta. log_z: 'mlp' | 'scalar'. pool: 'last' | 'mean' (the prompt pooling).
    detach_z: no gradient from the log Z / flow heads into the backbone. head_width: the heads' hidden width.
    """

    objective: str = "tb"
    eps: float = 0.05
    r_pos: float = 1.0
    lam: float = 1.0
    weighting: str = "rank"
    weight_gamma: float = 1.0
    num_samples: int = 8
    include_positive: bool = True
    schedule: str = "linear"
    cf_start: float = 0.5
    cf_end: float = 0.0
    total_steps: int = 100
    temperature: float = 1.0
    sft_weight: float = 1.0
    subtb_lambda: float = 1.0
    dpo_beta: float = 0.1
    log_z: str = "mlp"
    pool: str = "last"
    detach_z: bool = True
    head_width: int = 64

    def __post_init__(self):
        for key, value, allowed in (("objective", self.objective, OBJECTIVES), ("schedule", self.schedule, SCHEDULES),
                                    ("weighting", self.weighting, WEIGHTINGS), ("log_z", self.log_z, ("mlp", "scalar")),
                                    ("pool", self.pool, POOLS)):
            if value not in allowed:
                raise ConfigError(f"gflowgr.{key}={value!r}: expected one of {allowed}")
        if self.eps <= 0:
            raise ConfigError(f"gflowgr.eps={self.eps} must be > 0 (log R must be finite)")
        if self.num_samples < 1 + int(self.include_positive):
            raise ConfigError(f"gflowgr.num_samples={self.num_samples}: needs at least one slot besides the positive")
        for key in ("cf_start", "cf_end"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"gflowgr.{key}={getattr(self, key)} must lie in [0, 1]")
        if self.temperature <= 0 or self.subtb_lambda <= 0 or self.total_steps <= 0:
            raise ConfigError("gflowgr.temperature, subtb_lambda and total_steps must be > 0")


# ---- reward and weighting ----------------------------------------------------------------------

def reward(is_positive: jax.Array, ctr_logits: jax.Array, eps: float, r_pos: float, lam: float) -> jax.Array:
    """R `[B, K]` = eps + r_pos 1[positive] + lam sigmoid(ctr_logits) from `is_positive [B, K]` bool and `ctr_logits [B, K]`."""
    return eps + r_pos * is_positive.astype(jnp.float32) + lam * jax.nn.sigmoid(ctr_logits.astype(jnp.float32))


def trajectory_weights(rewards: jax.Array, mode: str = "rank", gamma: float = 1.0) -> jax.Array:
    """Heuristic weights `[B, K]` (module docstring) of `rewards [B, K]`, mean 1 over the batch, no gradient.
    Ties in 'rank' are ranked by slot order."""
    if mode not in WEIGHTINGS:
        raise ConfigError(f"gflowgr.weighting={mode!r}: expected one of {WEIGHTINGS}")
    r = jax.lax.stop_gradient(rewards)
    k = r.shape[1]
    if mode == "none":
        return jnp.ones_like(r)
    if mode == "rank":
        rank = jnp.argsort(jnp.argsort(r, axis=1, stable=True), axis=1).astype(jnp.float32)
        w = 1.0 + gamma * rank / max(k - 1, 1)
    else:
        w = r
    return w / w.mean()


# ---- the sampler --------------------------------------------------------------------------------

def cf_share(step: int | jax.Array, cfg: GFlowGRConfig, confidence: jax.Array | None = None) -> jax.Array:
    """The share of non-positive slots given to CF candidates (module docstring): `[]`, or `[B]` with 'confidence'."""
    t = jnp.minimum(jnp.asarray(step, jnp.float32) / cfg.total_steps, 1.0)
    if cfg.schedule == "constant":
        share = jnp.float32(cfg.cf_start)
    else:
        share = cfg.cf_start + (cfg.cf_end - cfg.cf_start) * t
    if cfg.schedule == "confidence":
        if confidence is None:
            raise ConfigError("gflowgr.schedule='confidence' needs the CF model's confidence [B] (cf_confidence)")
        share = share * jnp.clip(confidence.astype(jnp.float32), 0.0, 1.0)
    return share


def mix_counts(step: int | jax.Array, batch: int, cfg: GFlowGRConfig, confidence: jax.Array | None = None) -> jax.Array:
    """n_cf `[B]` int32: how many of each user's K slots hold CF candidates."""
    m = cfg.num_samples - int(cfg.include_positive)
    share = jnp.broadcast_to(cf_share(step, cfg, confidence), (batch,))
    return jnp.round(share * m).astype(jnp.int32)


def slot_sources(n_cf: jax.Array, cfg: GFlowGRConfig) -> jax.Array:
    """`[B, K]` int32 source of every slot: POSITIVE (slot 0 if `include_positive`), CF (the next n_cf), POLICY."""
    j = jnp.arange(cfg.num_samples)[None, :]
    first = int(cfg.include_positive)
    src = jnp.where(j < first + n_cf[:, None], CF, POLICY)
    return jnp.where(j < first, POSITIVE, src).astype(jnp.int32)


def sample_policy(net: GPT, net_vars: dict, prompts: jax.Array, num_levels: int, num_samples: int, key: jax.Array,
                  temperature: float, verifier: Any, pad_id: int = 0) -> jax.Array:
    """On-policy trajectories `[B, K, L]` tokens: `num_samples` draws per prompt of `prompts [B, P]`
    (left-padded with `pad_id`) from the model at `temperature`, under `verifier` (a logits processor)."""
    b = prompts.shape[0]
    rep = jnp.repeat(prompts, num_samples, axis=0)
    out = _generate(net, net_vars, rep, rep != pad_id, key, jnp.float32(temperature), jnp.float32(1.0), verifier,
                    max_new_tokens=num_levels, eos_id=None, pad_id=pad_id, top_k=0, greedy=False,
                    return_logits=False, recompute=False)
    return out.tokens.reshape(b, num_samples, num_levels)


def assemble(sources: jax.Array, positive: jax.Array, cf: jax.Array, policy: jax.Array) -> jax.Array:
    """Trajectories `[B, K, L]`: slot j takes `positive [B, L]`, the CF candidate j - #positive slots
    of `cf [B, K_cf, L]` (best first; clipped to the last), or `policy [B, K, L]`'s slot j."""
    k = sources.shape[1]
    first = jnp.sum(sources == POSITIVE, axis=1, keepdims=True)                  # [B, 1]
    idx = jnp.clip(jnp.arange(k)[None, :] - first, 0, cf.shape[1] - 1)           # [B, K]
    cf_pick = jnp.take_along_axis(cf, idx[..., None], axis=1)
    out = jnp.where((sources == CF)[..., None], cf_pick, policy)
    return jnp.where((sources == POSITIVE)[..., None], positive[:, None, :], out)


class ItemIndex:
    """Device-side lookup of item ids from codes: `item_codes [V, L]` (row = item id; rows before
    `first`, e.g. the padding row 0, are never returned) -> `lookup(codes [..., L]) -> ids [...]` (-1: no item)."""

    def __init__(self, item_codes: np.ndarray, first: int = 1):
        codes = np.asarray(item_codes, np.int64)[first:]
        self.base = int(codes.max()) + 2
        if self.base ** codes.shape[1] >= 2 ** 31:
            raise ValueError(f"ItemIndex: codes up to {self.base - 2} over {codes.shape[1]} levels overflow int32 keys")
        self.powers = jnp.asarray(self.base ** np.arange(codes.shape[1]), jnp.int32)
        keys = codes @ (self.base ** np.arange(codes.shape[1]))
        order = np.argsort(keys, kind="stable")
        self.keys, self.order = jnp.asarray(keys[order], jnp.int32), jnp.asarray(order + first, jnp.int32)

    def lookup(self, codes: jax.Array) -> jax.Array:
        q = (codes.astype(jnp.int32) * self.powers).sum(-1)
        pos = jnp.clip(jnp.searchsorted(self.keys, q), 0, self.keys.shape[0] - 1)
        return jnp.where((self.keys[pos] == q) & jnp.all(codes >= 0, axis=-1), self.order[pos], -1)


# ---- heads --------------------------------------------------------------------------------------

class LogZHead(nn.Module):
    """log Z_phi(u) `[B]` (or a flow log F(s) `[..]`) from a hidden state `[.., D]`: Dense-GELU-Dense."""

    width: int = 64

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        x = nn.gelu(nn.Dense(self.width)(h.astype(jnp.float32)))
        return nn.Dense(1)(x)[..., 0]


def init_heads(key: jax.Array, width: int, cfg: GFlowGRConfig) -> dict:
    """Parameters of the log Z head (`'log_z'`: MLP params, or a scalar) and the flow head (`'flow'`)."""
    k1, k2 = jax.random.split(key)
    head = LogZHead(cfg.head_width)
    z = jnp.zeros(()) if cfg.log_z == "scalar" else head.init(k1, jnp.zeros((1, width)))["params"]
    return {"log_z": z, "flow": head.init(k2, jnp.zeros((1, width)))["params"]}


def _hidden(net: GPT, net_vars: dict, tokens: jax.Array, valid: jax.Array) -> jax.Array:
    positions = valid_positions(valid)
    return net.apply(net_vars, tokens, positions, decode_mask(valid, 0, tokens.shape[1]), method=GPT.hidden)[0]


def log_z(params: dict, net: GPT, prompts: jax.Array, valid: jax.Array, cfg: GFlowGRConfig) -> jax.Array:
    """log Z(u) `[B]` for `prompts [B, P]` (module docstring)."""
    if cfg.log_z == "scalar":
        return jnp.broadcast_to(params["log_z"], (prompts.shape[0],))
    h = _hidden(net, {"params": params["net"]}, prompts, valid)                       # [B, P, D]
    if cfg.pool == "last":
        pooled = h[:, -1]
    else:
        pooled = (h * valid[..., None]).sum(1) / jnp.maximum(valid.sum(1, keepdims=True), 1)
    if cfg.detach_z:
        pooled = jax.lax.stop_gradient(pooled)
    return LogZHead(cfg.head_width).apply({"params": params["log_z"]}, pooled)


def state_flows(params: dict, net: GPT, prompts: jax.Array, valid: jax.Array, tokens: jax.Array,
                cfg: GFlowGRConfig) -> jax.Array:
    """log F(s_k) `[N, L - 1]` for k = 1..L-1 of trajectories `tokens [N, L]` after `prompts [N, P]`:
    the flow head on the hidden state at the state's last token."""
    p, levels = prompts.shape[1], tokens.shape[1]
    seq = jnp.concatenate([prompts, tokens[:, :-1]], axis=1)
    mask = jnp.concatenate([valid, jnp.ones(tokens[:, :-1].shape, bool)], axis=1)
    h = _hidden(net, {"params": params["net"]}, seq, mask)[:, p:p + levels - 1]          # states s_1..s_{L-1}
    if cfg.detach_z:
        h = jax.lax.stop_gradient(h)
    return LogZHead(cfg.head_width).apply({"params": params["flow"]}, h)


# ---- losses -------------------------------------------------------------------------------------

def sft_loss(params: dict, net: GPT, prompts: jax.Array, valid: jax.Array, positive: jax.Array) -> jax.Array:
    """`[B]` cross-entropy of the ground-truth tokens `positive [B, L]` over the full vocabulary."""
    return -token_logprobs(net, {"params": params["net"]}, prompts, valid, positive).sum(-1)


def trajectory_loss(params: dict, net: GPT, verifier: Any, batch: dict, cfg: GFlowGRConfig,
                    ref_params: dict | None = None) -> tuple[jax.Array, dict]:
    """The objective `cfg.objective` (module docstring) plus `sft_weight` x SFT, a scalar, and aux figures.

    batch: `prompts [B, P]` (pad 0), `positive [B, L]` ground-truth tokens, `trajectories [B, K, L]`
    tokens, `log_reward [B, K]`, `weights [B, K]`, `sources [B, K]`. `ref_params`: DPO's frozen model.
    """
    prompts, positive = batch["prompts"], batch["positive"]
    valid = prompts != 0
    b, k, levels = batch["trajectories"].shape
    sft = sft_loss(params, net, prompts, valid, positive).mean()
    aux = {"sft": sft}
    if cfg.objective == "sft":
        return cfg.sft_weight * sft, aux
    rep_p, rep_v = jnp.repeat(prompts, k, axis=0), jnp.repeat(valid, k, axis=0)
    traj = batch["trajectories"].reshape(b * k, levels)
    nv = {"params": params["net"]}
    if cfg.objective == "dpo":
        rejected_slot = jnp.argmax(batch["sources"] == POLICY, axis=1)                  # the first policy sample
        rejected = jnp.take_along_axis(batch["trajectories"], rejected_slot[:, None, None], axis=1)[:, 0]
        keep = ~jnp.all(rejected == positive, axis=-1) & jnp.any(batch["sources"] == POLICY, axis=1)
        pair = jnp.concatenate([positive, rejected], axis=0)
        pp, pv = jnp.concatenate([prompts, prompts]), jnp.concatenate([valid, valid])
        lp = token_logprobs(net, nv, pp, pv, pair, processor=verifier).sum(-1)
        ref = jax.lax.stop_gradient(token_logprobs(net, {"params": ref_params["net"]}, pp, pv, pair,
                                                   processor=verifier).sum(-1))
        per = dpo_loss(lp[:b], lp[b:], ref[:b], ref[b:], cfg.dpo_beta)
        main = (per * keep).sum() / jnp.maximum(keep.sum(), 1)
        aux["dpo"] = main
        return main + cfg.sft_weight * sft, aux
    log_pf_tokens = token_logprobs(net, nv, rep_p, rep_v, traj, processor=verifier)      # [BK, L]
    w, log_r = batch["weights"].reshape(-1), batch["log_reward"].reshape(-1)
    if cfg.objective == "reinforce":
        r = jnp.exp(batch["log_reward"])
        on = (batch["sources"] == POLICY).astype(jnp.float32)
        base = (r * on).sum(1, keepdims=True) / jnp.maximum(on.sum(1, keepdims=True), 1)
        adv = jax.lax.stop_gradient((r - base) * on).reshape(-1)
        main = -(adv * log_pf_tokens.sum(-1)).sum() / jnp.maximum(on.sum(), 1)
        aux["reinforce"] = main
        return main + cfg.sft_weight * sft, aux
    lz = jnp.repeat(log_z(params, net, prompts, valid, cfg), k)                           # [BK]
    if cfg.objective == "tb":
        per = trajectory_balance(lz, log_pf_tokens, log_r)
    else:
        flows = jnp.concatenate([lz[:, None], state_flows(params, net, rep_p, rep_v, traj, cfg)], axis=1)
        per = subtrajectory_balance(flows, log_pf_tokens, log_r, cfg.subtb_lambda)
    main = (w * per).mean()
    aux.update(balance=main, log_z=lz.mean())
    return main + cfg.sft_weight * sft, aux


@functools.partial(jax.jit, static_argnames=("net", "optimizer", "cfg"))
def update(params: dict, opt_state: Any, batch: dict, verifier: Any, ref_params: dict | None, *, net: GPT,
           optimizer: optax.GradientTransformation, cfg: GFlowGRConfig) -> tuple[dict, Any, jax.Array, dict]:
    """One optimizer step on `trajectory_loss` -> (params, opt_state, loss, aux)."""
    (loss, aux), grads = jax.value_and_grad(trajectory_loss, has_aux=True)(params, net, verifier, batch, cfg, ref_params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, aux


# ---- one fine-tuning step, end to end -------------------------------------------------------------

def make_batch(params: dict, net: GPT, verifier: Any, index: ItemIndex, offsets: jax.Array, prompts: jax.Array,
               users: jax.Array, target_items: jax.Array, cf_items: jax.Array, ctr_logit: Callable, step: int,
               key: jax.Array, cfg: GFlowGRConfig, item_codes: jax.Array, cf_confidence: jax.Array | None = None) -> dict:
    """The sampler and the reward for one step: `prompts [B, P]`, `users [B]`, `target_items [B]`,
    `cf_items [B, K_cf]` (the CF model's top items, best first), `item_codes [V, L]`, `offsets [L]`
    (token of code 0 per level). REINFORCE samples on-policy only (no positive, no CF slots).
    -> the batch `trajectory_loss` reads, plus `items [B, K]` and `rewards [B, K]`."""
    b = prompts.shape[0]
    on_policy = cfg.objective == "reinforce"
    run_cfg = dataclasses.replace(cfg, include_positive=False, cf_start=0.0, cf_end=0.0,
                                  schedule="constant") if on_policy else cfg
    n_cf = mix_counts(step, b, run_cfg, cf_confidence)
    sources = slot_sources(n_cf, run_cfg)
    positive = item_codes[target_items] + offsets
    policy = sample_policy(net, {"params": params["net"]}, prompts, positive.shape[1], cfg.num_samples, key,
                           cfg.temperature, verifier)
    cf = item_codes[cf_items] + offsets
    traj = assemble(sources, positive, cf, policy)
    items = index.lookup(traj - offsets)
    rewards = reward(items == target_items[:, None], ctr_logit(users, jnp.maximum(items, 0)), cfg.eps, cfg.r_pos,
                     cfg.lam)
    return {"prompts": prompts, "positive": positive, "trajectories": traj, "sources": sources,
            "log_reward": jnp.log(rewards), "weights": trajectory_weights(rewards, cfg.weighting, cfg.weight_gamma),
            "items": items, "rewards": rewards}
