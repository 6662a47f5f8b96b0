"""field_attention's float32 error on a GPU against a float64 numpy reference, for the XLA
path and the Pallas kernel, each at the backend's default dot precision and at HIGHEST.

    python benchmarks/gpu_precision_probe.py OUT_DIR     # writes OUT_DIR/pallas_gpu_precision.json

(The precision trade-off: docs/results/pallas_gpu.md.)
"""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import pallas_kernels.field_attention as fa


def ref64(q, k, v, w):
    q, k, v, w = (np.asarray(x, np.float64) for x in (q, k, v, w))
    s = np.einsum("bhid,bhjd->bhij", q, k) / np.sqrt(q.shape[-1]) * w
    p = np.exp(s - s.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
    return np.einsum("bhij,bhjd->bhid", p, v)

out = {}
for shape in [(256, 2, 26, 16), (64, 4, 64, 64)]:
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(3))
    w = jnp.asarray(rng.normal(size=(shape[2], shape[2])), jnp.float32)
    want = ref64(q, k, v, w)
    res = {}
    for name, prec, impl in [("xla_default", None, "xla"), ("xla_highest", "highest", "xla"),
                             ("pallas_default", None, "pallas"), ("pallas_highest", "highest", "pallas")]:
        f = jax.jit(lambda q, k, v, w, impl=impl, prec=prec: fa.field_attention(q, k, v, w, implementation=impl, precision=prec))
        res[name] = float(np.abs(np.asarray(f(q, k, v, w)) - want).max() / np.abs(want).max())
    out[str(shape)] = res
    print(shape, res, flush=True)
json.dump(out, open(os.path.join(sys.argv[1], "pallas_gpu_precision.json"), "w"), indent=1)
