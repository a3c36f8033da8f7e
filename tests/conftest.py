"""
Harness for the greenworks test suite.

- The process is monkey-patched first, as the applications greenworks serves
  are: a blocking socket call in a test yields to the hub like it does there.
- Every test runs under a ``gevent.Timeout`` guard (``@pytest.mark.timeout(s)``
  changes it), so a lost wake-up fails one test instead of hanging the run.
- After every test, no greenlet spawned by greenworks may still be alive.
"""

from gevent import monkey

monkey.patch_all()

import os

import gevent
import pytest
from hypothesis import HealthCheck, settings

from greenworks import _greenlets
from greenworks.testing import FakeClock, settle

DEFAULT_TEST_TIMEOUT = float(os.environ.get("GREENWORKS_TEST_TIMEOUT", "30"))

#: gevent before 26.8 mishandles monkey-patched threading across OS threads, outside greenworks:
#: a threading.Event.set() waited on by another thread hangs the hub (so do cf.wait and
#: as_completed called from one), and on Python 3.13 the stdlib ThreadPoolExecutor never exits
#: with work left at exit. Probed with 22.10.2 to 26.4.0 (hang) and 26.8.0, 26.9.0 (fixed).
GEVENT_BEFORE_26_8 = tuple(int(part) for part in gevent.__version__.split(".")[:2]) < (26, 8)

settings.register_profile(
    "greenworks",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("greenworks")


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test gevent.Timeout guard")
    config.addinivalue_line("markers", "slow: takes more than a second of real time")


class TestTimedOut(AssertionError):
    """The per-test guard fired: something waited for a wake-up that never came."""


@pytest.fixture(autouse=True)
def _greenlet_guard(request):
    """Fail a test that hangs, or that leaves a greenworks greenlet alive."""
    marker = request.node.get_closest_marker("timeout")
    seconds = marker.args[0] if marker else DEFAULT_TEST_TIMEOUT
    timeout = gevent.Timeout(seconds, TestTimedOut("test still running after %ss" % seconds))
    timeout.start()
    try:
        yield
    finally:
        timeout.close()
    settle()
    leaked = _greenlets.alive()
    if leaked:
        names = sorted(g.name for g in leaked)
        gevent.killall(leaked, timeout=5)
        pytest.fail("greenlets left alive after the test: %s" % ", ".join(names))


@pytest.fixture
def clock():
    """A FakeClock at 2026-01-01 00:00 UTC."""
    return FakeClock()
