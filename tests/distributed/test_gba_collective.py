"""GBA as a mesh collective equals the pure aggregation within 1e-6 on 8 forced CPU devices."""

from pathlib import Path

from tests.distributed import run_on_8_cpu_devices

CHECKS = Path(__file__).with_name("_gba_checks.py")


def test_gba_collective_equals_pure_aggregation():
    proc = run_on_8_cpu_devices(CHECKS)
    assert proc.returncode == 0 and "ALL CHECKS PASSED" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.count("ok   ") == 3, proc.stdout
