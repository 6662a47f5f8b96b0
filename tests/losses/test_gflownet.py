"""GFlowNet objectives (jaxrec.losses.gflownet) worked by hand on a 2-level toy. That they train a
sampler to R(x) / Z (total variation <= 0.05) is tested end to end in tests/test_gflowgr.py."""

import jax.numpy as jnp
import numpy as np

from jaxrec.losses.gflownet import subtrajectory_balance, trajectory_balance


def test_trajectory_balance_by_hand_on_a_two_level_tree():
    # root -> {a, b}, a -> {a1, a2}: P_F(a) = 0.6, P_F(a2 | a) = 0.25, R(a2) = 0.3, log Z = log 2
    log_pf = jnp.log(jnp.array([[0.6, 0.25]]))
    loss = trajectory_balance(jnp.log(jnp.array([2.0])), log_pf, jnp.log(jnp.array([0.3])))
    np.testing.assert_allclose(loss, [np.log(2 * 0.6 * 0.25 / 0.3) ** 2], rtol=1e-6)  # (log 1)^2 = 0
    loss = trajectory_balance(jnp.log(jnp.array([4.0])), log_pf, jnp.log(jnp.array([0.3])))
    np.testing.assert_allclose(loss, [np.log(2.0) ** 2], rtol=1e-6)


def test_subtrajectory_balance_by_hand_and_its_limits():
    log_z, log_fa, log_r = np.log(2.0), np.log(0.5), np.log(0.3)
    log_pf = np.log([[0.6, 0.25]])
    flows = jnp.asarray([[log_z, log_fa]])
    r01 = log_z + log_pf[0, 0] - log_fa
    r12 = log_fa + log_pf[0, 1] - log_r
    r02 = log_z + log_pf[0].sum() - log_r
    got = subtrajectory_balance(flows, jnp.asarray(log_pf), jnp.asarray([log_r]), lam=2.0)
    np.testing.assert_allclose(got, [(2 * r01 ** 2 + 2 * r12 ** 2 + 4 * r02 ** 2) / 8], rtol=1e-5)
    # lambda -> infinity: the whole trajectory dominates, SubTB -> TB
    flows = jnp.asarray([[np.log(3.0), log_fa]])  # unbalanced: TB = (log 1.5)^2
    big = subtrajectory_balance(flows, jnp.asarray(log_pf), jnp.asarray([log_r]), lam=1e6)
    tb = trajectory_balance(flows[:, 0], jnp.asarray(log_pf), jnp.asarray([log_r]))
    np.testing.assert_allclose(tb, [np.log(1.5) ** 2], rtol=1e-5)
    np.testing.assert_allclose(big, tb, rtol=1e-4)

