"""Multi-task models: `model.apply(variables, batch, train=...) -> outputs [B, T]` (a logit per
binary task, a value per regression task), over the same embedding layer as the CTR models.

Naming convention (what `is_shared` reads): parameters that only one task's output depends on
live under modules named `tower_<t>` or `task_<t>_...`; everything else (embeddings, shared
bottom, experts, earlier PLE levels) is shared, and multi-task gradient methods
(`jaxrec.optim.multitask`) combine the per-task gradients of exactly those.
"""

from __future__ import annotations

from jaxrec.models.multitask.mmoe import MMoE
from jaxrec.models.multitask.ple import PLE
from jaxrec.models.multitask.shared_bottom import SharedBottom
from jaxrec.optim.multitask import is_shared  # the naming convention above, read by the gradient combiners

MULTITASK_MODELS = {"shared_bottom": SharedBottom, "mmoe": MMoE, "ple": PLE}

__all__ = ["MMoE", "PLE", "SharedBottom", "MULTITASK_MODELS", "is_shared"]
