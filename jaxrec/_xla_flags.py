"""CPU compiler defaults jaxrec sets before JAX starts (only where they were measured).

On the jaxlib 0.10 line, XLA:CPU lowers matmuls through YNNPACK fusions by default; on the
2-core AMD EPYC development machine its Eigen path runs the CTR MLP shapes a little faster
(DeepFM, batch 1024: 304,612 vs 291,342 examples/s, +4.6%; benchmarks/results/
train_throughput.json vs train_throughput_xla_default_flags.json, the latter made with
`JAXREC_NO_XLA_DEFAULTS=1`). The flag is appended to `XLA_FLAGS` only if

  * jaxlib is a version it was measured on (an unknown flag makes XLA abort),
  * the user has not set that flag, nor `JAXREC_NO_XLA_DEFAULTS=1`,

and it only takes effect if JAX's backends are not yet initialised when jaxrec is imported.
It only concerns the CPU backend; GPU and TPU ignore it.
"""

from __future__ import annotations

import os

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=",)
MEASURED_JAXLIB = ("0.10.",)


def apply() -> None:
    if os.environ.get("JAXREC_NO_XLA_DEFAULTS"):
        return
    try:
        from importlib.metadata import version

        jaxlib_version = version("jaxlib")
    except Exception:  # noqa: BLE001 - no jaxlib metadata: leave flags alone
        return
    if not jaxlib_version.startswith(MEASURED_JAXLIB):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in CPU_FLAGS:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags
