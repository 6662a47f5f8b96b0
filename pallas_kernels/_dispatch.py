"""Which form of a Pallas op runs: shared by every kernel file (see each op's "What runs where")."""

from __future__ import annotations

from typing import Any

import jax

IMPLEMENTATIONS = (None, "xla", "pallas")


def _is_tpu_interpret(interpret: Any) -> bool:
    try:
        from jax.experimental.pallas import tpu as pltpu
    except ImportError:  # pragma: no cover
        return False
    return isinstance(interpret, pltpu.InterpretParams)


def resolve(op: str, implementation: str | None, interpret: Any) -> str:
    """'gpu' | 'tpu' | 'xla': the form of `op` to run.

    implementation None picks by backend (kernel on GPU/TPU, XLA elsewhere); 'xla' forces the
    XLA path; 'pallas' the current backend's kernel. A truthy `interpret` runs the GPU form in
    the generic interpreter, `pltpu.InterpretParams()` the TPU form in the TPU interpreter.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {implementation!r}; expected one of {IMPLEMENTATIONS}")
    if interpret:
        if implementation == "xla":
            raise ValueError("interpret= applies to the Pallas kernel; it cannot be combined with implementation='xla'")
        return "tpu" if _is_tpu_interpret(interpret) else "gpu"
    backend = jax.default_backend()
    if implementation is None:
        return {"gpu": "gpu", "tpu": "tpu"}.get(backend, "xla")
    if implementation == "pallas":
        if backend not in ("gpu", "tpu"):
            raise ValueError(f"{op} has Pallas kernels for 'gpu' and 'tpu', not {backend!r}; "
                             "pass interpret=True to run the kernel in the interpreter, or implementation='xla'")
        return backend
    return "xla"
