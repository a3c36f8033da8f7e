"""Cancellation trees and deadlines with greenworks.Context, and a FakeClock driving them.

A parent context with a deadline fans out to three pollers; one poller is
cancelled on its own, then the parent's deadline ends the rest. The same code
runs again under a FakeClock, where an hour of polling takes no real time.

Expected output::

    real clock: poller-a stopped by Canceled after ... polls
    real clock: poller-b stopped by DeadlineExceeded after ... polls
    real clock: poller-c stopped by DeadlineExceeded after ... polls
    fake clock: 3600 polls in one simulated hour, DeadlineExceeded
    ok
"""

from gevent import monkey

monkey.patch_all()

import sys

import gevent

from greenworks.context import with_cancel, with_timeout
from greenworks.testing import FakeClock


def poller(ctx, every):
    """Poll until the context is done; return how many polls ran."""
    polls = 0
    while ctx.sleep(every):
        polls += 1
    return polls


def real_clock_tree():
    parent = with_timeout(None, 0.3)
    children = {name: with_cancel(parent) for name in ("poller-a", "poller-b", "poller-c")}
    jobs = {name: gevent.spawn(poller, ctx, 0.01) for name, ctx in children.items()}
    gevent.sleep(0.1)
    children["poller-a"].cancel()
    gevent.joinall(list(jobs.values()))
    for name, job in jobs.items():
        err = type(children[name].err).__name__
        print("real clock: %s stopped by %s after %d polls" % (name, err, job.value))
    return children


def fake_clock_hour():
    clock = FakeClock()
    # Half a second of slack: at exactly 3600 s the deadline (armed first)
    # would win the tie against the 3600th wake-up.
    ctx = with_timeout(None, 3600.5, clock=clock)
    job = gevent.spawn(poller, ctx, 1.0)
    clock.wait_for_sleepers(2)
    clock.advance(3600.5)
    print("fake clock: %d polls in one simulated hour, %s" % (job.get(), type(ctx.err).__name__))
    return job.value


def main():
    children = real_clock_tree()
    polls = fake_clock_hour()
    ok = (
        type(children["poller-a"].err).__name__ == "Canceled"
        and all(type(children[n].err).__name__ == "DeadlineExceeded" for n in ("poller-b", "poller-c"))
        and polls == 3600
    )
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
