"""Tensor-parallel GPT (parameters placed by logical axis names) equals one device.

The checks need 8 forced CPU devices (set before JAX starts), so they run in a subprocess:
`_transformer_checks.py`, meshes (8, 1), (4, 2), (1, 8); the GQA + MoE + SwiGLU variant on (4, 2);
and train.py's loop (the 'lm' task) on a (2, 4) mesh: weights placed tensor-parallel, the same perplexity.
"""

from __future__ import annotations

from pathlib import Path

from tests.distributed import run_on_8_cpu_devices

CHECKS = Path(__file__).with_name("_transformer_checks.py")


def test_forward_and_train_step_on_8_cpu_devices_equal_one_device():
    runs = ["8x1:mha", "4x2", "1x8:mha", "trainer:2x4"]
    proc = run_on_8_cpu_devices(CHECKS, *runs, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "ALL CHECKS PASSED" in proc.stdout, f"{CHECKS.name} failed:\n{out}"
    assert "FAIL" not in proc.stdout, out
    assert proc.stdout.count("ok ") == 4 * 5 + 4, out  # 5 checks per (mesh, config); 4 of train.py's loop on (2, 4)
