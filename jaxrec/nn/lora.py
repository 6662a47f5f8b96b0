"""Dense layers with logical axis names and optional LoRA adapters; merging and freezing.

LoRA (Hu et al., 2021) adds a trainable low-rank update to a frozen weight:

    y = x W + b + (alpha / r) * (x A) B,     A [d_in, r] ~ N(0, 1/d_in),  B [r, d_out] = 0

so a fine-tuned model starts equal to its base. `Dense` is `flax.linen.DenseGeneral` with a
logical axis name per kernel dimension (`jaxrec.mesh.LOGICAL_RULES` places it on the mesh) and,
when `lora_rank > 0`, the adapters `lora_a` / `lora_b` beside `kernel` (the input and output
dimensions are flattened for A and B, so it works for the multi-head kernels `[d, H, d_h]` too).
Every Dense of jaxrec's transformer blocks is this one, so any of them takes adapters.

* `merge(params, alpha_over_rank)` folds the adapters into the kernels for serving:
  `W <- W + (alpha / r) A B` (reshaped), and drops them: the result is the parameters of the
  same model built with `lora_rank=0`.
* `trainable_labels(params)` / `lora_optimizer(tx)`: optax `multi_transform` over the label
  tree, `'adapter'` for `lora_a` / `lora_b`, `'frozen'` (`optax.set_to_zero`) for the rest.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

ADAPTERS = ("lora_a", "lora_b")


class Dense(nn.Module):
    """`x [..., *in] -> [..., *features]` over the last `len(in_axes)` dimensions, named.

    Attributes:
      features: output dimensions, e.g. `(H, d_h)` for a query projection or `(d,)`.
      kernel_axes: logical names of the kernel's dimensions: input dims then output dims.
      contract: how many trailing input dimensions are contracted (2 for an output projection
        over `[..., H, d_h]`).
      use_bias: a bias over the output dimensions (named like them).
      lora_rank: r > 0 adds LoRA adapters (module docstring); 0 is a plain DenseGeneral.
      lora_alpha: the adapters' scale is `lora_alpha / lora_rank`.
    """

    features: Sequence[int]
    kernel_axes: Sequence[str | None]
    contract: int = 1
    use_bias: bool = True
    lora_rank: int = 0
    lora_alpha: float = 16.0
    kernel_init: Any = nn.initializers.lecun_normal()
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = tuple(self.features)
        axis = tuple(range(-self.contract, 0))
        in_shape = x.shape[-self.contract:]
        kernel_axes = tuple(self.kernel_axes)
        y = nn.DenseGeneral(
            features, axis=axis, use_bias=self.use_bias, dtype=self.dtype, name="base",
            kernel_init=nn.with_logical_partitioning(self.kernel_init, kernel_axes),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, kernel_axes[self.contract:]),
        )(x)
        if self.lora_rank <= 0:
            return y
        d_in, d_out, r = math.prod(in_shape), math.prod(features), self.lora_rank
        a = self.param("lora_a", nn.with_logical_partitioning(nn.initializers.normal(d_in ** -0.5), (None, "lora")), (d_in, r))
        b = self.param("lora_b", nn.with_logical_partitioning(nn.initializers.zeros, ("lora", None)), (r, d_out))
        low = (x.reshape(*x.shape[:x.ndim - self.contract], d_in) @ a) @ b
        return y + (self.lora_alpha / r) * low.reshape(*low.shape[:-1], *features).astype(y.dtype)


def merge(params: Any, scale: float) -> Any:
    """Folds every `Dense`'s adapters into its kernel, `W + scale * A B` (scale = alpha / r), and
    drops them: the parameters of the same model with `lora_rank=0`."""
    if not isinstance(params, dict):
        return params
    if "lora_a" in params and "lora_b" in params:
        base = dict(params["base"])
        kernel = base["kernel"]
        base["kernel"] = kernel + scale * (params["lora_a"] @ params["lora_b"]).reshape(kernel.shape).astype(kernel.dtype)
        return {"base": base, **{k: merge(v, scale) for k, v in params.items() if k not in ("base", *ADAPTERS)}}
    return {k: merge(v, scale) for k, v in params.items()}


def trainable_labels(params: Any) -> Any:
    """A tree like `params` labelling adapters `'adapter'` and everything else `'frozen'`."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    labels = ["adapter" if any(getattr(k, "key", None) in ADAPTERS for k in path) else "frozen" for path, _ in flat]
    return jax.tree.unflatten(jax.tree.structure(params), labels)


def lora_optimizer(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` on the adapters only; the base parameters get zero updates (and no optimizer slots)."""
    return optax.multi_transform({"adapter": tx, "frozen": optax.set_to_zero()}, trainable_labels)


def count_adapters(params: Any) -> int:
    """Number of adapter parameters in `params`."""
    labels = trainable_labels(params)
    return sum(int(jnp.size(x)) for x, l in zip(jax.tree.leaves(params), jax.tree.leaves(labels)) if l == "adapter")
