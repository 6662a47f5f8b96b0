"""Preference losses over sequence log-probabilities: DPO, and VALUE's weighted DPO (WDPO).

For a prompt x with a preferred output y_w and a dispreferred y_l, the policy pi and a frozen
reference pi_ref (the SFT model; its log-probabilities are usually computed once, before training):

    m    = beta * ((log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)))
    DPO  = -log sigmoid(m)                         (Rafailov et al. 2023)
    WDPO = -w(y_w, y_l) * log sigmoid(m)           (VALUE, arXiv 2504.05321, spec section 3)

WDPO's weight up-weights pairs whose value gap is large and stable and down-weights noisy or
transient ones. The paper's formula could not be read; the form here is the spec's reading [I]:

    w = tanh(gamma * |v_w - v_l| / sigma_v) * s,   s = stability of the gap's sign over T windows

with v the pair's values over the whole period, sigma_v the standard deviation of the values
(a scale; the caller passes it), and s either 'indicator' (1 if the gap has the sign of the
overall gap in every window, else 0, the spec's) or 'fraction' (the share of windows that agree).
`normalize=True` rescales the weights of a batch to mean 1 (so WDPO and DPO take steps of the
same size and differ only in how they spread them) [I].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

STABILITY = ("indicator", "fraction", "none")


def dpo_margin(policy_chosen: jax.Array, policy_rejected: jax.Array, ref_chosen: jax.Array, ref_rejected: jax.Array,
               beta: float = 0.1) -> jax.Array:
    """`m [B]` (module docstring) from the four sequence log-probabilities `[B]`."""
    return beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))


def dpo_loss(policy_chosen: jax.Array, policy_rejected: jax.Array, ref_chosen: jax.Array, ref_rejected: jax.Array,
             beta: float = 0.1, weights: jax.Array | None = None) -> jax.Array:
    """Per-pair (weighted) DPO loss `[B]`: `-w * log sigmoid(m)`; `weights [B]` None = 1 (plain DPO)."""
    loss = -jax.nn.log_sigmoid(dpo_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta))
    return loss if weights is None else weights * loss


def wdpo_weights(value_chosen: jax.Array, value_rejected: jax.Array, window_gaps: jax.Array | None = None,
                 gamma: float = 1.0, scale: float = 1.0, stability: str = "indicator",
                 normalize: bool = True) -> jax.Array:
    """WDPO's pair weights `[B]` (module docstring).

    Args:
      value_chosen, value_rejected: `[B]` the two outputs' values over the whole period.
      window_gaps: `[B, T]` the gap v_w - v_l in each of T time windows (None: no stability term).
      gamma: the tanh's slope; scale: sigma_v (> 0).
      stability: 'indicator' | 'fraction' | 'none'.
      normalize: rescale to mean 1 over the batch (an all-zero batch stays 0).
    """
    if stability not in STABILITY:
        raise ValueError(f"stability={stability!r}: expected one of {STABILITY}")
    gap = value_chosen - value_rejected
    w = jnp.tanh(gamma * jnp.abs(gap) / scale)
    if window_gaps is not None and stability != "none":
        agree = (jnp.sign(window_gaps) == jnp.sign(gap)[:, None]).astype(jnp.float32)
        w = w * (agree.min(axis=1) if stability == "indicator" else agree.mean(axis=1))
    if normalize:
        mean = w.mean()
        w = jnp.where(mean > 0, w / jnp.where(mean > 0, mean, 1.0), w)
    return w
