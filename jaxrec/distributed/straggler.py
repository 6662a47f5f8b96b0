"""Straggler simulation, timing half: when each worker's gradient arrives, under which training mode.

Timing does not depend on gradient values, so a simulated run splits into a pure schedule
(this module: event-driven, deterministic from a seed) and a replay that runs the real
gradient math and optimizer over it. A schedule is a list of `Arrival`s in server order:

    Arrival(time, worker, batch, version, step)
      batch    index of the local batch in the data stream (taken when the worker starts)
      version  global step of the parameters the gradient was computed at (= GBA's token)
      step     global step whose update the gradient joins (its staleness is step - version);
               -1: discarded (a backup worker's late gradient)

Speed model (`SpeedModel`): N workers, a seeded fraction s of them r times slower, and
log-normal jitter per batch: time(worker, n) = base * (r if slow else 1) * exp(jitter * z).

Modes (M = local gradients per update):
  sync     barrier every step: all N compute at version k; the step ends at the slowest. M = N.
  backup   Hop-BW style: as sync, but the step ends when the first N - backups arrive; the rest
           are discarded and every worker restarts at the new version. M = N - backups.
  async    parameter server: each arrival is applied at once (M = 1); a worker pulls the latest
           version and goes on without waiting.
  ssp      async with bounded staleness: a worker may start its batch c only if c - (the fewest
           batches any worker has finished) <= bound; otherwise it waits.
  gba      non-blocking workers as async, but the server aggregates M arrivals per update
           (M = N by default, the synchronous global batch); tokens = versions at pull time.

Pushes at the same instant all land before any worker pulls again, so with equal speeds and
no jitter 'gba' is exactly 'sync'. Arrivals of a final, incomplete step (fewer than M) are
listed with that step; a replay applies only complete steps.
"""

from __future__ import annotations

import dataclasses
import heapq
from typing import NamedTuple

import numpy as np

from jaxrec.errors import ConfigError
from jaxrec.optim.gba import MODES  # the modes a schedule is made for (their aggregation: gba.mode_aggregation)


@dataclasses.dataclass(frozen=True)
class SpeedModel:
    """Per-batch compute time of each worker (module docstring)."""

    num_workers: int = 8
    slow_fraction: float = 0.0
    slowdown: float = 1.0
    jitter: float = 0.1
    base_time: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.num_workers, int) and self.num_workers >= 1):
            raise ConfigError(f"straggler.num_workers must be an int >= 1, got {self.num_workers!r}")
        if not 0.0 <= self.slow_fraction <= 1.0:
            raise ConfigError(f"straggler.slow_fraction must be in [0, 1], got {self.slow_fraction!r}")
        if self.slowdown < 1.0 or self.jitter < 0.0 or self.base_time <= 0.0:
            raise ConfigError(f"straggler: need slowdown >= 1, jitter >= 0, base_time > 0; got "
                              f"{self.slowdown!r}, {self.jitter!r}, {self.base_time!r}")

    @property
    def slow_workers(self) -> frozenset[int]:
        """The round(s * N) slowed workers, drawn from the seed."""
        k = int(round(self.slow_fraction * self.num_workers))
        return frozenset(np.random.default_rng(self.seed).permutation(self.num_workers)[:k].tolist())

    def batch_time(self, worker: int, n: int) -> float:
        """Seconds worker `worker` takes for its n-th batch (deterministic in (seed, worker, n))."""
        z = np.random.default_rng([self.seed, worker, n]).standard_normal() if self.jitter else 0.0
        return self.base_time * (self.slowdown if worker in self.slow_workers else 1.0) * float(np.exp(self.jitter * z))


class Arrival(NamedTuple):
    time: float
    worker: int
    batch: int
    version: int
    step: int


def schedule(mode: str, speed: SpeedModel, num_batches: int, *, num_aggregate: int | None = None,
             backups: int = 1, bound: int = 2) -> list[Arrival]:
    """Arrivals of `mode` until `num_batches` local batches have been started (module docstring).

    Args:
      num_aggregate: M for 'gba' (default N).
      backups: discarded stragglers per step for 'backup'.
      bound: staleness bound (in batches) for 'ssp'.
    """
    if mode not in MODES:
        raise ConfigError(f"straggler mode {mode!r}: expected one of {MODES}")
    n = speed.num_workers
    if mode in ("sync", "backup"):
        keep = n if mode == "sync" else n - backups
        if not 1 <= keep <= n:
            raise ConfigError(f"backup workers: backups={backups} must be in [0, {n - 1}]")
        return _rounds(speed, num_batches, keep)
    m = {"async": 1, "ssp": 1, "gba": num_aggregate or n}[mode]
    return _free_running(speed, num_batches, m, bound if mode == "ssp" else None)


def _rounds(speed: SpeedModel, num_batches: int, keep: int) -> list[Arrival]:
    """Barrier rounds: all workers start at version k; the first `keep` arrivals form step k."""
    out, t, batch, done = [], 0.0, 0, [0] * speed.num_workers
    for k in range(-(-num_batches // speed.num_workers)):
        started = []
        for w in range(speed.num_workers):
            if batch < num_batches:
                started.append((t + speed.batch_time(w, done[w]), w, batch))
                done[w] += 1
                batch += 1
        started.sort()
        used = started[:keep]
        out += [Arrival(a, w, b, k, k) for a, w, b in used]
        out += [Arrival(a, w, b, k, -1) for a, w, b in started[keep:]]
        t = used[-1][0]  # the step ends with its keep-th arrival; discarded work is abandoned
    return sorted(out, key=lambda a: (a.time, a.worker))


def _free_running(speed: SpeedModel, num_batches: int, m: int, bound: int | None) -> list[Arrival]:
    """Non-blocking workers; the server applies an update after every m arrivals."""
    n = speed.num_workers
    out, events, waiting = [], [], []
    k, count, batch = 0, 0, 0
    done = [0] * n          # batches finished per worker

    def start(w: int, t: float) -> None:
        nonlocal batch
        if batch >= num_batches:
            return
        if bound is not None and done[w] - min(done) > bound:
            waiting.append(w)
            return
        heapq.heappush(events, (t + speed.batch_time(w, done[w]), w, batch, k))
        batch += 1

    for w in range(n):
        start(w, 0.0)
    while events:
        t, arrived = events[0][0], []
        while events and events[0][0] == t:  # simultaneous pushes all land before anyone pulls
            _, w, b, version = heapq.heappop(events)
            out.append(Arrival(t, w, b, version, k))
            arrived.append(w)
            done[w] += 1
            count += 1
            if count == m:
                k, count = k + 1, 0
        blocked, waiting[:] = list(waiting), []
        for w in arrived + blocked:
            start(w, t)
    return out
