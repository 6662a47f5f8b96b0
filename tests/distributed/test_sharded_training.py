"""Training with row-sharded tables on a mesh equals single-device training; checkpoints saved on
8 devices restore on 1 and 4. Runs `_sharded_training_checks.py` with 8 forced CPU devices."""

from pathlib import Path

from tests.distributed import run_on_8_cpu_devices

CHECKS = Path(__file__).with_name("_sharded_training_checks.py")


def test_sharded_training_matches_single_device(ml100k_dir):
    proc = run_on_8_cpu_devices(CHECKS, str(ml100k_dir))
    assert proc.returncode == 0 and "ALL CHECKS PASSED" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.count("ok   ") == 31, proc.stdout
