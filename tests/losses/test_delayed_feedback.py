"""The delayed-feedback losses: hand-computed cases and DEFUSE's unbiasedness (Monte-Carlo)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.losses import delayed_feedback as dfl


S = [0.7, -1.2, 0.1, 2.0]  # logits of four samples
Y = [1.0, 0.0, 1.0, 0.0]  # observed labels
DUP = [0.0, 0.0, 1.0, 0.0]  # sample 2 is a delayed-positive copy
P_DP = [0.3, 0.2, 0.4, 0.1]
P_RN = [0.6, 0.9, 0.5, 0.7]


def sig(s):
    return 1 / (1 + math.exp(-s))


def lp(s):  # -log f
    return -math.log(sig(s))


def ln(s):  # -log(1 - f)
    return -math.log(1 - sig(s))


def targets(**extra):
    t = {"label": Y, "duplicate": DUP, "p_dp": P_DP, "p_rn": P_RN}
    return {k: jnp.asarray(v, jnp.float32) for k, v in {**t, **extra}.items()}


def out(**heads):
    return {k: jnp.asarray(v, jnp.float32) for k, v in heads.items()}


def mean(xs):
    return sum(xs) / len(xs)


def test_cross_entropy_by_hand():
    want = mean([lp(S[0]), ln(S[1]), lp(S[2]), ln(S[3])])
    assert float(dfl.cross_entropy_loss(out(cvr=S), targets())) == pytest.approx(want, rel=1e-6)


def test_padding_weight_drops_rows():
    t = targets(weight=[1.0, 1.0, 0.0, 0.0])
    assert float(dfl.cross_entropy_loss(out(cvr=S), t)) == pytest.approx(mean([lp(S[0]), ln(S[1])]), rel=1e-6)


def test_fnw_by_hand():
    p = [sig(s) for s in S]
    want = mean([(1 + p[0]) * lp(S[0]), (1 - p[1]) * (1 + p[1]) * ln(S[1]),
                 (1 + p[2]) * lp(S[2]), (1 - p[3]) * (1 + p[3]) * ln(S[3])])
    assert float(dfl.fnw_loss(out(cvr=S), targets())) == pytest.approx(want, rel=1e-6)


def test_es_dfm_by_hand():
    want = mean([(1 + P_DP[0]) * lp(S[0]), (1 + P_DP[1]) * P_RN[1] * ln(S[1]),
                 (1 + P_DP[2]) * lp(S[2]), (1 + P_DP[3]) * P_RN[3] * ln(S[3])])
    assert float(dfl.es_dfm_loss(out(cvr=S), targets())) == pytest.approx(want, rel=1e-6)


def test_defer_by_hand_and_code_compat():
    p = [sig(s) for s in S]
    wpos = [p[i] / (p[i] - P_DP[i] / 2) for i in range(4)]
    wneg = [(1 - p[i]) / (1 - p[i] + P_DP[i] / 2) for i in range(4)]
    want = mean([wpos[0] * lp(S[0]), wneg[1] * ln(S[1]), wpos[2] * lp(S[2]), wneg[3] * ln(S[3])])
    assert float(dfl.defer_loss(out(cvr=S), targets())) == pytest.approx(want, rel=1e-6)
    code = mean([2 * (2 - P_DP[0]) * lp(S[0]), wneg[1] * ln(S[1]), 2 * (2 - P_DP[2]) * lp(S[2]), wneg[3] * ln(S[3])])
    assert float(dfl.defer_loss(out(cvr=S), targets(), code_compat=True)) == pytest.approx(code, rel=1e-6)
    # p < p_dp / 2: the importance weight is undefined there; capped at max_weight.
    t = targets(p_dp=[0.9, 0.9, 0.9, 0.9])
    capped = dfl.defer_loss(out(cvr=[-3.0] * 4), t, max_weight=10.0)
    pw = sig(-3.0)
    nw = (1 - pw) / (1 - pw + 0.45)
    assert float(capped) == pytest.approx(mean([10 * lp(-3.0), nw * ln(-3.0), 10 * lp(-3.0), nw * ln(-3.0)]), rel=1e-6)


def test_dfm_by_hand_and_code_compat():
    r = [0.5, -0.3, 1.0, 0.0]  # pre-softplus rates
    lam = [math.log1p(math.exp(x)) for x in r]
    e, d = [2.0, 3.0, 1.5, 0.5], [1.0, 0.0, 0.25, 0.0]

    def nll(delays):
        terms = []
        for i in range(4):
            f = sig(S[i])
            if Y[i]:
                terms.append(-math.log(f * lam[i] * math.exp(-lam[i] * delays[i])))
            else:
                terms.append(-math.log(1 - f + f * math.exp(-lam[i] * e[i])))
        return mean(terms)

    t = targets(elapsed=e, delay=d)
    assert float(dfl.dfm_loss(out(cvr=S, delay=r), t)) == pytest.approx(nll(d), rel=1e-5)
    assert float(dfl.dfm_loss(out(cvr=S, delay=r), t, code_compat=True)) == pytest.approx(nll(e), rel=1e-5)


def test_defuse_by_hand_and_code_compat():
    z = [1 - x for x in P_RN]
    neg = lambda i: z[i] * P_DP[i] * lp(S[i]) + (1 - z[i]) * (1 + P_DP[i]) * ln(S[i])  # noqa: E731
    # sample 0 is an immediate positive, sample 2 a delayed-positive copy.
    want = mean([(1 + P_DP[0]) * lp(S[0]), neg(1), lp(S[2]), neg(3)])
    assert float(dfl.defuse_loss(out(cvr=S), targets())) == pytest.approx(want, rel=1e-6)
    code = mean([(2 + P_DP[0]) * lp(S[0]), neg(1), (2 + P_DP[2]) * lp(S[2]), neg(3)])
    assert float(dfl.defuse_loss(out(cvr=S), targets(), code_compat=True)) == pytest.approx(code, rel=1e-6)


def test_bidefuse_by_hand():
    s_in, s_out = [0.2, -0.5, 1.1, -2.0], [-0.4, 0.3, 0.9, -1.0]
    # in-window: originals only (samples 0, 1, 3), label = observed IP label.
    inw = mean([lp(s_in[0]), ln(s_in[1]), ln(s_in[3])])
    q = [sig(s) for s in s_out]
    outw = mean([(1 - q[i]) * (1 + q[i]) * ln(s_out[i]) + q[i] * q[i] * lp(s_out[i]) if not DUP[i] else lp(s_out[i])
                 for i in range(4)])
    assert float(dfl.bidefuse_loss(out(**{"in": s_in, "out": s_out}), targets())) == pytest.approx(inw + outw, rel=1e-6)
    probs = dfl.probability(out(**{"in": s_in, "out": s_out}), "bidefuse")
    np.testing.assert_allclose(probs, np.clip(np.array([sig(a) + sig(b) for a, b in zip(s_in, s_out)]), 0, 1 - 1e-6), rtol=1e-6)


def test_auxiliary_losses_by_hand():
    s_tn, s_dp = [0.3, -0.7, 1.2, 0.0], [-1.0, 0.4, 0.2, 2.0]
    y, delayed = [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0]  # IP, RN, DP (converted late), RN
    t = {"label": jnp.asarray(y), "delayed": jnp.asarray(delayed)}
    # tn: on clicks negative at w_o (1, 2, 3); label = real negative.
    tn = mean([ln(s_tn[2]), lp(s_tn[1]), lp(s_tn[3])])
    dp = mean([ln(s_dp[0]), ln(s_dp[1]), lp(s_dp[2]), ln(s_dp[3])])
    assert float(dfl.tn_dp_loss(out(tn=s_tn, dp=s_dp), t)) == pytest.approx(tn + dp, rel=1e-6)
    s_in, s_out = s_tn, s_dp  # in-window label: 1, 0, 0, 0; out-window: delayed
    io = mean([lp(s_in[0]) + ln(s_out[0]), ln(s_in[1]) + ln(s_out[1]), ln(s_in[2]) + lp(s_out[2]), ln(s_in[3]) + ln(s_out[3])])
    assert float(dfl.in_out_window_loss(out(**{"in": s_in, "out": s_out}), t)) == pytest.approx(io, rel=1e-6)


def test_fnc_prediction_and_clipping():
    p = dfl.probability(out(cvr=[0.0, -2.0, 3.0]), "fnc")
    np.testing.assert_allclose(p, [1 - 1e-6, sig(-2) / (1 - sig(-2)), 1 - 1e-6], rtol=1e-6)


# ------------------------------------------------------------------- unbiasedness (MC)

# Four kinds of click x: true CVR p, and the share of conversions that come after w_o.
GROUPS = [(0.1, 0.8), (0.3, 0.5), (0.5, 0.9), (0.7, 0.3)]
LOGITS = [0.4, -1.0, 1.5, -0.2]  # the model's current (arbitrary) logit for each kind
CLICKS = 400_000  # per kind


def simulated_stream(seed=0):
    """Clicks of each kind with types drawn from (p_ip, p_dp, p_rn), as the 'duplicate'
    stream: every click once (label 1 iff IP), plus a label-1 copy of every FN."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("group", "click", "label", "duplicate", "p_dp", "p_rn", "true")}
    for g, (p, late) in enumerate(GROUPS):
        p_dp, p_ip = p * late, p * (1 - late)
        u = rng.random(CLICKS)
        ip, fn = u < p_ip, (u >= p_ip) & (u < p)
        z_rn = (1 - p) / (1 - p_ip)  # P(real negative | negative at w_o)
        for dup, rows in ((0.0, np.arange(CLICKS)), (1.0, np.flatnonzero(fn))):
            n = len(rows)
            cols["group"].append(np.full(n, g))
            cols["click"].append(rows + g * CLICKS)
            cols["label"].append(ip[rows].astype(float) if dup == 0 else np.ones(n))
            cols["duplicate"].append(np.full(n, dup))
            cols["p_dp"].append(np.full(n, p_dp))
            cols["p_rn"].append(np.full(n, z_rn))
            cols["true"].append((ip | fn)[rows].astype(float))
    return {k: np.concatenate(v) for k, v in cols.items()}


def per_kind_gradient(loss, stream, **kw):
    """Per kind: the mean over its observed samples of d loss / d logit, and the standard
    error of that ratio estimator (clicks are the independent units)."""
    s = jnp.asarray(np.asarray(LOGITS)[stream["group"]], jnp.float32)
    t = {k: jnp.asarray(stream[k], jnp.float32) for k in ("label", "duplicate", "p_dp", "p_rn")}
    n = len(stream["group"])
    g = np.asarray(jax.grad(lambda s: loss({"cvr": s}, t, **kw) * n)(s), np.float64)  # per-sample gradients
    means, ses = [], []
    for k in range(len(GROUPS)):
        sel = stream["group"] == k
        per_click = np.bincount(stream["click"][sel] - k * CLICKS, weights=g[sel], minlength=CLICKS)
        count = np.bincount(stream["click"][sel] - k * CLICKS, minlength=CLICKS)
        r = per_click.sum() / count.sum()
        means.append(r)
        ses.append(np.std(per_click - r * count) / math.sqrt(CLICKS) / count.mean())
    return np.array(means), np.array(ses)


def oracle_gradient():
    """d(cross-entropy)/d logit in expectation over true labels: sigmoid(s) - p, per kind."""
    return np.array([sig(s) - p for s, (p, _) in zip(LOGITS, GROUPS)])


def test_defuse_is_unbiased():
    """With the true p_dp and z, DEFUSE's expected gradient per observed sample equals the
    oracle's expected gradient per click, for every kind of click: |difference| < 4 standard
    errors of the Monte-Carlo estimate (SE about 0.001 at 400,000 clicks per kind), while the
    biased losses miss by more than 10 SE."""
    stream = simulated_stream()
    want = oracle_gradient()
    got, se = per_kind_gradient(dfl.defuse_loss, stream)
    assert np.all(se < 2e-3)
    np.testing.assert_array_less(np.abs(got - want), 4 * se)
    es_dfm, se_es = per_kind_gradient(dfl.es_dfm_loss, stream)  # also unbiased with true weights
    np.testing.assert_array_less(np.abs(es_dfm - want), 4 * se_es)
    for biased, kw in ((dfl.defuse_loss, {"code_compat": True}), (dfl.cross_entropy_loss, {}), (dfl.fnw_loss, {})):
        g, s = per_kind_gradient(biased, stream, **kw)
        assert np.max(np.abs(g - want) / s) > 10, biased


def test_monte_carlo_oracle_matches_expectation():
    """The simulation itself: cross-entropy on the true labels of the clicks recovers
    sigmoid(s) - p within 4 SE (guards the stream simulator the test above relies on)."""
    stream = simulated_stream(seed=1)
    originals = {k: v[stream["duplicate"] == 0] for k, v in stream.items()}
    originals["label"] = originals["true"]
    got, se = per_kind_gradient(dfl.cross_entropy_loss, originals)
    np.testing.assert_array_less(np.abs(got - oracle_gradient()), 4 * se)


def test_bidefuse_out_window_head_is_stationary_at_true_p_dp():
    """Bi-DEFUSE's out-window head: per click, its expected gradient is (1 - q)(q - p_dp)
    (q = its prediction), zero exactly at the true P(convert after w_o); 4 SE."""
    stream = simulated_stream(seed=2)
    n = len(stream["group"])
    s_out = jnp.asarray(np.asarray(LOGITS)[stream["group"]], jnp.float32)
    t = {k: jnp.asarray(stream[k], jnp.float32) for k in ("label", "duplicate")}
    g = np.asarray(jax.grad(lambda s: dfl.bidefuse_loss({"in": jnp.zeros(n), "out": s}, t) * n)(s_out), np.float64)
    for k, (p, late) in enumerate(GROUPS):
        sel = stream["group"] == k
        per_click = np.bincount(stream["click"][sel] - k * CLICKS, weights=g[sel], minlength=CLICKS)
        q = sig(LOGITS[k])
        se = np.std(per_click) / math.sqrt(CLICKS)
        assert abs(per_click.mean() - (1 - q) * (q - p * late)) < 4 * se
