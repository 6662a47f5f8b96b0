"""Starts one program as N joined JAX processes on this machine.

    python -m jaxrec.distributed.launch --processes 2 train.py --config configs/deepfm_movielens.py --workdir runs/x

Each process runs `python <program> <args>` with the environment of
`jaxrec.distributed.runtime` (coordinator, process count, its id); `train.py` and `eval.py`
join the run and build one mesh over every process's devices (`--devices_per_process` CPU
devices each; on GPU, each process sees the GPUs CUDA_VISIBLE_DEVICES gives it). Process 0
prints to this terminal; the others log to `<log_dir>/process_<i>.log`. If one process
fails, the others are stopped and the launcher exits with its status. On a cluster, start
the program once per host with those variables set instead (see `runtime`).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxrec.distributed import runtime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(process_id: int, num_processes: int, port: int, devices_per_process: int) -> dict[str, str]:
    """The environment of process `process_id`."""
    env = dict(os.environ)
    env.update({runtime.COORDINATOR: f"127.0.0.1:{port}", runtime.NUM_PROCESSES: str(num_processes),
                runtime.PROCESS_ID: str(process_id)})
    if devices_per_process:
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices_per_process}"])
    return env


def launch(program: list[str], num_processes: int, devices_per_process: int = 1, log_dir: str | None = None,
           port: int | None = None) -> int:
    """Runs `program` (argv after the interpreter) as `num_processes` joined processes; returns
    the first non-zero exit status, or 0."""
    port = port or free_port()
    logs = Path(log_dir or tempfile.mkdtemp(prefix="jaxrec-launch-"))
    logs.mkdir(parents=True, exist_ok=True)
    procs, files = [], []
    for i in range(num_processes):
        out = None if i == 0 else open(logs / f"process_{i}.log", "w")
        files.append(out)
        procs.append(subprocess.Popen([sys.executable, *program], env=child_env(i, num_processes, port, devices_per_process),
                                      stdout=out, stderr=subprocess.STDOUT if out else None))
    status = 0
    try:
        while None in [p.poll() for p in procs]:  # a list: poll every process, each time
            failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode not in (None, 0)]
            if failed:
                status = failed[0][1]
                print(f"launch: process {failed[0][0]} exited with status {status}; stopping the others "
                      f"(logs of processes 1..{num_processes - 1} in {logs})", file=sys.stderr)
                break
            time.sleep(0.2)
        status = status or next((p.returncode for p in procs if p.returncode), 0)
    except KeyboardInterrupt:
        status = 130
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in files:
            if f:
                f.close()
    return status


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m jaxrec.distributed.launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, required=True, help="N processes to start")
    p.add_argument("--devices_per_process", type=int, default=1, help="forced CPU devices per process (0: leave XLA_FLAGS)")
    p.add_argument("--log_dir", default=None, help="where processes 1..N-1 log (default: a new temporary folder)")
    p.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    p.add_argument("program", nargs=argparse.REMAINDER, help="the script and its arguments, e.g. train.py --config ...")
    args = p.parse_args(argv)
    if args.processes < 1 or not args.program:
        p.error("need --processes >= 1 and a program to run")
    sys.exit(launch(args.program, args.processes, args.devices_per_process, args.log_dir, args.port))


if __name__ == "__main__":
    main()
