"""DPO and WDPO (jaxrec.losses.preference) worked by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.losses.preference import dpo_loss, dpo_margin, wdpo_weights


def test_dpo_by_hand_and_its_gradient_pushes_the_margin_up():
    pc, pr, rc, rr = jnp.array([-1.0, -2.0]), jnp.array([-3.0, -1.0]), jnp.array([-1.5, -2.0]), jnp.array([-2.5, -2.0])
    # row 0: (-1 + 1.5) - (-3 + 2.5) = 1.0;  row 1: (-2 + 2) - (-1 + 2) = -1.0
    np.testing.assert_allclose(dpo_margin(pc, pr, rc, rr, beta=0.5), [0.5, -0.5])
    np.testing.assert_allclose(dpo_loss(pc, pr, rc, rr, beta=0.5), np.log1p(np.exp([-0.5, 0.5])), rtol=1e-6)
    np.testing.assert_allclose(dpo_loss(pc, pr, rc, rr, 0.5, jnp.array([2.0, 0.0])), [2 * np.log1p(np.exp(-0.5)), 0.0],
                               rtol=1e-6)
    # at the reference (policy == ref) the loss is log 2 whatever the data
    np.testing.assert_allclose(dpo_loss(rc, rr, rc, rr, beta=3.0), [np.log(2)] * 2, rtol=1e-6)


def test_wdpo_weights_by_hand():
    vw, vl = jnp.array([3.0, 1.0, 2.0]), jnp.array([1.0, 1.0, 0.0])
    gaps = jnp.array([[1.0, 2.0, 3.0], [0.5, -0.5, 0.0], [1.0, -1.0, 2.0]])
    raw = np.tanh(0.5 * np.array([2.0, 0.0, 2.0]) / 2.0)
    np.testing.assert_allclose(wdpo_weights(vw, vl, gamma=0.5, scale=2.0, normalize=False), raw, rtol=1e-6)
    # indicator: row 2's gap flips sign in window 2 -> 0; fraction: 2 of 3 windows agree
    np.testing.assert_allclose(wdpo_weights(vw, vl, gaps, 0.5, 2.0, "indicator", False), raw * [1, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(wdpo_weights(vw, vl, gaps, 0.5, 2.0, "fraction", False), raw * [1, 1 / 3, 2 / 3], rtol=1e-6)
    w = wdpo_weights(vw, vl, gaps, 0.5, 2.0, "fraction", True)
    np.testing.assert_allclose(float(w.mean()), 1.0, rtol=1e-6)
    np.testing.assert_allclose(wdpo_weights(vl, vl), [0.0, 0.0, 0.0])  # no gap anywhere: all zero, not NaN
    with pytest.raises(ValueError, match="stability='always'"):
        wdpo_weights(vw, vl, gaps, stability="always")
