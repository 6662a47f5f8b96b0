"""Losses: the plain ones (`basic`: binary cross-entropy on logits, the one definition the
others build on, and squared error), the delayed-feedback family (`delayed_feedback`), preference
losses over sequence log-probabilities (`preference`: DPO, VALUE's weighted DPO) and GFlowNet
objectives for generation on a tree (`gflownet`: trajectory and sub-trajectory balance)."""

from jaxrec.losses.basic import bce, bce_loss, squared_error
from jaxrec.losses.gflownet import subtrajectory_balance, trajectory_balance
from jaxrec.losses.preference import dpo_loss, dpo_margin, wdpo_weights

__all__ = ["bce", "bce_loss", "dpo_loss", "dpo_margin", "squared_error", "subtrajectory_balance", "trajectory_balance",
           "wdpo_weights"]
