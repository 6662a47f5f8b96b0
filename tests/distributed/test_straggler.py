"""Straggler schedules against hand-traced cases: worker 0 takes 3 s a batch, worker 1 takes 1 s."""

import pytest

from jaxrec.distributed.straggler import MODES, SpeedModel, schedule
from jaxrec.errors import ConfigError

SPEED = SpeedModel(num_workers=2, slow_fraction=0.5, slowdown=3.0, jitter=0.0)

# (time, worker, batch, version, step); step -1 = discarded
HAND = {
    "sync": [(1, 1, 1, 0, 0), (3, 0, 0, 0, 0), (4, 1, 3, 1, 1), (6, 0, 2, 1, 1), (7, 1, 5, 2, 2), (9, 0, 4, 2, 2)],
    # one backup: the slow worker's gradient never makes it; each step lasts 1 s
    "backup": [(1, 1, 1, 0, 0), (2, 1, 3, 1, 1), (3, 0, 0, 0, -1), (3, 1, 5, 2, 2), (4, 0, 2, 1, -1), (5, 0, 4, 2, -1)],
    # every arrival is an update; the slow worker's first gradient lands 2 updates late (pushes
    # at the same instant all land before the workers pull again)
    "async": [(1, 1, 1, 0, 0), (2, 1, 2, 1, 1), (3, 0, 0, 0, 2), (3, 1, 3, 2, 3), (4, 1, 5, 4, 4), (6, 0, 4, 4, 5)],
    # bound 1: the fast worker waits at t=2 until the slow one finishes at t=3, and again at t=4
    "ssp": [(1, 1, 1, 0, 0), (2, 1, 2, 1, 1), (3, 0, 0, 0, 2), (4, 1, 4, 3, 3), (6, 0, 3, 3, 4), (9, 0, 5, 5, 5)],
    # M = 2: the fast worker fills step 0 alone by t=2; the slow one's version-0 gradient joins step 1
    "gba": [(1, 1, 1, 0, 0), (2, 1, 2, 0, 0), (3, 0, 0, 0, 1), (3, 1, 3, 1, 1), (4, 1, 5, 2, 2), (6, 0, 4, 2, 2)],
}


def test_speed_model():
    assert SPEED.slow_workers == {0}
    assert (SPEED.batch_time(0, 5), SPEED.batch_time(1, 5)) == (3.0, 1.0)
    jittery = SpeedModel(num_workers=8, slow_fraction=0.3, slowdown=4.0, jitter=0.2, seed=3)
    assert len(jittery.slow_workers) == 2 and jittery.batch_time(4, 7) == jittery.batch_time(4, 7)  # deterministic


@pytest.mark.parametrize("mode", MODES)
def test_schedules_by_hand(mode):
    got = [tuple(a) for a in schedule(mode, SPEED, 6, backups=1, bound=1)]
    assert got == [tuple(float(x) if i == 0 else x for i, x in enumerate(h)) for h in HAND[mode]]


def test_gba_without_stragglers_is_sync():
    even = SpeedModel(num_workers=4, jitter=0.0)
    assert schedule("gba", even, 20) == schedule("sync", even, 20)


def test_every_batch_is_taken_once():
    jittery = SpeedModel(num_workers=8, slow_fraction=0.3, slowdown=4.0, jitter=0.3, seed=1)
    for mode in MODES:
        arrivals = schedule(mode, jittery, 100)
        assert sorted(a.batch for a in arrivals) == list(range(100)), mode
        assert all(a.step == -1 or a.step >= a.version for a in arrivals), mode


def test_bad_options():
    with pytest.raises(ConfigError, match="mode"):
        schedule("hogwild", SPEED, 4)
    with pytest.raises(ConfigError, match="backups"):
        schedule("backup", SPEED, 4, backups=2)
    with pytest.raises(ConfigError, match="slow_fraction"):
        SpeedModel(slow_fraction=1.5)
