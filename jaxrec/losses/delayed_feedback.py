"""Delayed-feedback losses for streaming conversion-rate (CVR) training.

DEFUSE and Bi-DEFUSE: Chen, Jin, Lin et al., "Asymptotically Unbiased Estimation for
Delayed Feedback Modeling via Label Correction", WWW 2022 (arXiv 2202.06472); details from
the authors' released code (github ychen216/DEFUSE, `src/loss.py`), read for understanding.
Baselines: FNW and FNC (Ktena et al., "Addressing Delayed Feedback for Continuous Training
with Neural Networks in CTR Prediction", RecSys 2019), ES-DFM (Yang et al., "Capturing
Delayed Feedback in Conversion Rate Prediction via Elapsed-Time Sampling", AAAI 2021),
DEFER (Gu et al., "Real Negatives Matter: Continuous Training with Real Negatives for
Delayed Feedback Modeling", KDD 2021) and DFM (Chapelle, "Modeling Delayed Feedback in
Display Advertising", KDD 2014).

The stream (`jaxrec.data.delayed_feedback`): a click is ingested once with the label seen
by the end of the observation window w_o (1 = immediate positive IP; 0 = a fake negative
FN that converts later, or a real negative RN), and converted-later clicks come back as a
duplicate with label 1 (delayed positive DP) at conversion time. With f = sigmoid(s) the
model's prediction, l+ = -log f and l- = -log(1 - f):

    vanilla / oracle   l = y l+ + (1 - y) l-   (observed labels / true labels)
    FNW                y (1 + p) l+ + (1 - y)(1 - p)(1 + p) l-,       p = sg(f)
    FNC                cross-entropy; predicts p / (1 - p)
    ES-DFM             y (1 + p_dp) l+ + (1 - y)(1 + p_dp) p_rn l-
    DEFER              y p / (p - p_dp/2) l+ + (1 - y)(1 - p) / (1 - p + p_dp/2) l-
    DFM                y [l+ - log lam + lam d] - (1 - y) log(1 - f + f exp(-lam e))
    DEFUSE             IP: (1 + p_dp) l+     DP: l+
                       observed negative: z p_dp l+ + (1 - z)(1 + p_dp) l-
    Bi-DEFUSE          in-window head: cross-entropy on the original samples (label = IP);
                       out-window head (label = DP): DP: l+;
                       others: (1 - q)(1 + q) l-_out + q q l+_out,  q = sg(f_out);
                       predicts f_in + f_out

where p_dp = P(convert after w_o | x) and p_rn = P(real negative | x, negative at w_o) come
from an auxiliary model trained before streaming and then frozen (`tn_dp_loss`), and z =
1 - p_rn is the probability that an observed negative is a fake one. All weights are
stop-gradient. Each DEFUSE weight is p(y|x) / q(y|x) times (1 + p_dp(x)): per click the
expected gradient is (1 + p_dp(x)) times the oracle's, so the minimiser per x is the true
CVR (the papers take q(x) ~ p(x); `tests/losses` checks this by Monte-Carlo).

Every loss is `loss(outputs, targets) -> scalar`: `outputs` maps head names to logits `[B]`
('cvr'; DFM also 'delay', the rate's pre-softplus; Bi-DEFUSE 'in' and 'out'; the auxiliary
model 'tn' and 'dp'), `targets` maps names to `[B]` arrays: 'label' (observed, or true for
the oracle), 'duplicate' (1 for a DP copy), 'p_dp', 'p_rn' (frozen auxiliary predictions),
'elapsed' and 'delay' (DFM, in the stream's time unit) and optionally 'weight' (0 for
padding rows). The result is the weighted mean over the batch.

`code_compat=True` reproduces the released code where it departs from the paper:
  * DEFUSE: every observed positive gets both positive terms, (1 + p_dp) l+ + l+ (the code
    loads the IP / DP indicators but does not use them);
  * DEFER: the positive weight is 2 (2 - p_dp) (operator precedence in `2 * p / p * (2 -
    dp)`; the commented-out line is the paper's p / (p - p_dp / 2));
  * DFM: positives use the elapsed time as their delay (the code feeds one column to both).
Inferred [I]: DEFER's positive weight is capped at `max_weight` (it is unbounded where the
model's p < p_dp / 2); FNC's prediction is clipped to [eps, 1 - eps] so NLL stays finite.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from jaxrec.losses.basic import bce  # y l+ + (1 - y) l-, elementwise

Outputs = Mapping[str, jnp.ndarray]
Targets = Mapping[str, jnp.ndarray]

EPS = 1e-6
sg = jax.lax.stop_gradient


def pos_term(s: jnp.ndarray) -> jnp.ndarray:
    """l+ = -log sigmoid(s), elementwise."""
    return jax.nn.softplus(-s)


def neg_term(s: jnp.ndarray) -> jnp.ndarray:
    """l- = -log(1 - sigmoid(s)), elementwise."""
    return jax.nn.softplus(s)


def weighted_mean(values: jnp.ndarray, targets: Targets, mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """Mean of `values [B]` over the rows with `targets['weight']` (all if absent) times `mask`."""
    w = targets.get("weight", jnp.ones_like(values))
    if mask is not None:
        w = w * mask
    return jnp.sum(w * values) / jnp.maximum(jnp.sum(w), 1.0)


def cross_entropy_loss(outputs: Outputs, targets: Targets) -> jnp.ndarray:
    """Vanilla (observed labels), oracle (true labels) and FNC training: plain cross-entropy."""
    s, y = outputs["cvr"], targets["label"]
    return weighted_mean(bce(s, y), targets)


def fnw_loss(outputs: Outputs, targets: Targets) -> jnp.ndarray:
    """Fake negative weighted: positives (1 + p) l+, negatives (1 - p)(1 + p) l-, p = sg(f)."""
    s, y = outputs["cvr"], targets["label"]
    p = sg(jax.nn.sigmoid(s))
    return weighted_mean(y * (1 + p) * pos_term(s) + (1 - y) * (1 - p) * (1 + p) * neg_term(s), targets)


def es_dfm_loss(outputs: Outputs, targets: Targets) -> jnp.ndarray:
    """ES-DFM: positives (1 + p_dp) l+, negatives (1 + p_dp) p_rn l-."""
    s, y = outputs["cvr"], targets["label"]
    p_dp, p_rn = sg(targets["p_dp"]), sg(targets["p_rn"])
    return weighted_mean(y * (1 + p_dp) * pos_term(s) + (1 - y) * (1 + p_dp) * p_rn * neg_term(s), targets)


def defer_loss(outputs: Outputs, targets: Targets, code_compat: bool = False, max_weight: float = 10.0) -> jnp.ndarray:
    """DEFER, on its stream where every click is duplicated (at conversion, or at w_a):
    positives p / (p - p_dp/2) l+ (capped at `max_weight`), negatives (1 - p)/(1 - p + p_dp/2) l-."""
    s, y = outputs["cvr"], targets["label"]
    p, p_dp = sg(jax.nn.sigmoid(s)), sg(targets["p_dp"])
    if code_compat:
        w_pos = 2.0 * (2.0 - p_dp)
    else:
        q_pos = p - p_dp / 2
        w_pos = jnp.where(q_pos * max_weight > p, p / jnp.maximum(q_pos, EPS), max_weight)
    w_neg = (1 - p) / (1 - p + p_dp / 2)
    return weighted_mean(y * w_pos * pos_term(s) + (1 - y) * w_neg * neg_term(s), targets)


def dfm_loss(outputs: Outputs, targets: Targets, code_compat: bool = False) -> jnp.ndarray:
    """Delayed feedback model: P(convert | x) = f and an exponential delay of rate
    lam = softplus(outputs['delay']). A converted click contributes -log(f lam exp(-lam d));
    an unconverted one, elapsed e since its click, -log(1 - f + f exp(-lam e))."""
    s, y = outputs["cvr"], targets["label"]
    lam = jax.nn.softplus(outputs["delay"]) + EPS
    e = targets["elapsed"]
    d = e if code_compat else targets["delay"]
    pos = pos_term(s) - jnp.log(lam) + lam * d
    # log(1 - f + f exp(-lam e)) = logaddexp(log(1 - f), log f - lam e), stable in s.
    neg = -jnp.logaddexp(-jax.nn.softplus(s), -jax.nn.softplus(-s) - lam * e)
    return weighted_mean(y * pos + (1 - y) * neg, targets)


def defuse_loss(outputs: Outputs, targets: Targets, code_compat: bool = False) -> jnp.ndarray:
    """DEFUSE: IP (1 + p_dp) l+, DP l+, observed negatives z p_dp l+ + (1 - z)(1 + p_dp) l-,
    z = 1 - p_rn. `code_compat`: every positive gets (1 + p_dp) l+ + l+ (module docstring)."""
    s, y, dup = outputs["cvr"], targets["label"], targets["duplicate"]
    p_dp, z = sg(targets["p_dp"]), sg(1 - targets["p_rn"])
    lp, ln = pos_term(s), neg_term(s)
    if code_compat:
        positive = y * (2 + p_dp) * lp
    else:
        positive = y * (1 - dup) * (1 + p_dp) * lp + y * dup * lp
    negative = (1 - y) * (z * p_dp * lp + (1 - z) * (1 + p_dp) * ln)
    return weighted_mean(positive + negative, targets)


def bidefuse_loss(outputs: Outputs, targets: Targets) -> jnp.ndarray:
    """Bi-DEFUSE: in-window cross-entropy on the original samples (label = observed IP label)
    plus the out-window head's loss on all samples (label = duplicate), with the fake-negative
    correction of its own stop-gradient prediction q: DP l+, others (1 - q)(1 + q) l- + q q l+."""
    y, dup = targets["label"], targets["duplicate"]
    s_in, s_out = outputs["in"], outputs["out"]
    inw = weighted_mean(bce(s_in, y), targets, mask=1 - dup)
    q = sg(jax.nn.sigmoid(s_out))
    outw = dup * pos_term(s_out) + (1 - dup) * ((1 - q) * (1 + q) * neg_term(s_out) + q * q * pos_term(s_out))
    return inw + weighted_mean(outw, targets)


def tn_dp_loss(outputs: Outputs, targets: Targets) -> jnp.ndarray:
    """The auxiliary model's pre-training loss (DEFUSE step 1, ES-DFM, DEFER), on clicks with
    known outcomes: 'tn' = P(real negative | x, negative at w_o), cross-entropy on the clicks
    negative at w_o (real negatives and delayed converters); 'dp' = P(convert after w_o | x),
    cross-entropy on all. Targets: 'label' (converted within w_a), 'delayed' (after w_o)."""
    y, delayed = targets["label"], targets["delayed"]
    s_tn, s_dp = outputs["tn"], outputs["dp"]
    rn = 1 - y
    tn = weighted_mean(bce(s_tn, rn), targets, mask=rn + delayed)
    dp = weighted_mean(bce(s_dp, delayed), targets)
    return tn + dp


def in_out_window_loss(outputs: Outputs, targets: Targets) -> jnp.ndarray:
    """Bi-DEFUSE pre-training: cross-entropy of 'in' against conversion within w_o plus of
    'out' against conversion after w_o. Targets: 'label' (within w_a), 'delayed'."""
    y, delayed = targets["label"], targets["delayed"]
    inw = y * (1 - delayed)
    return weighted_mean(bce(outputs["in"], inw) + bce(outputs["out"], delayed), targets)


def probability(outputs: Outputs, method: str) -> jnp.ndarray:
    """The CVR a method predicts `[B]`: sigmoid of 'cvr'; FNC p / (1 - p); Bi-DEFUSE
    f_in + f_out. Clipped to [eps, 1 - eps]."""
    if method == "bidefuse":
        f = jax.nn.sigmoid(outputs["in"]) + jax.nn.sigmoid(outputs["out"])
    elif method == "fnc":
        p = jax.nn.sigmoid(outputs["cvr"])
        f = p / jnp.maximum(1 - p, EPS)
    else:
        f = jax.nn.sigmoid(outputs["cvr"])
    return jnp.clip(f, EPS, 1 - EPS)
