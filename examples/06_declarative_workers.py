"""Declarative workers provided to a registry: a repeated poll and a flaky worker restarted with backoff.

A ``WorkerConfigurer`` describes two ``DeclarativeWorker``s: ``Poller`` runs a
job every 0.1 s with ``repeat``; ``Flaky`` fails twice before it connects and
is restarted by ``retry`` with an ``ExponentialBackoff``. Both are provided to
a ``zope.interface`` registry and run with ``run_provided_workers`` under a
one-second timeout; each runs as a subsystem named after the configurer's type,
with a fresh trace id per (re)start. Retry warnings are shown through
``SubsystemFilter``.

Expected output::

    flaky attempt 1 in /__main__/Workers/Flaky (trace ...): connection refused
    retry in /__main__/Workers: worker Flaky failed 1 times: connection refused
    flaky attempt 2 in /__main__/Workers/Flaky (trace ...): connection refused
    retry in /__main__/Workers: worker Flaky failed 2 times: connection refused
    flaky attempt 3 in /__main__/Workers/Flaky (trace ...): connected
    poll 5 in /__main__/Workers/Poller
    flaky: cancelled, cleaned up
    stopped by the timeout after ... s: ... polls, 3 flaky attempts with 3 trace ids
    OK
"""

from gevent import monkey

monkey.patch_all()

import logging
import sys
import time

from zope.interface import implementer
from zope.interface.registry import Components

from greenworks.backoff import ExponentialBackoff
from greenworks.context import background, with_timeout
from greenworks.interfaces import IWorkerConfigurer
from greenworks.runutil import (
    DeclarativeWorker,
    SubsystemFilter,
    current_subsystem,
    current_trace,
    job_func,
    provide_worker,
    repeat,
    run_provided_workers,
)


@implementer(IWorkerConfigurer)
class Workers:
    """Describes its own workers, as the seed's ``CommitFetcher`` does."""

    def __init__(self):
        self.polls = 0
        self.traces = []

    def workers(self):
        return [
            DeclarativeWorker(
                "Poller",
                repeat(0.1, job_func(self.poll)),
                retry=ExponentialBackoff(0.05, 0.4, jitter_proportion=0.5),
            ),
            DeclarativeWorker(
                "Flaky",
                self.connect,
                retry=ExponentialBackoff(0.1, 0.4, jitter_proportion=0.5),
            ),
        ]

    def poll(self, ctx):
        self.polls += 1
        print("poll %d in %s" % (self.polls, current_subsystem()), flush=True)

    def connect(self, ctx):
        trace = current_trace()
        self.traces.append(trace.trace_id)
        where = "flaky attempt %d in %s (trace %s)" % (len(self.traces), trace.subsystem, trace.trace_id)
        if len(self.traces) < 3:
            print("%s: connection refused" % where, flush=True)
            raise ConnectionRefusedError("connection refused")
        print("%s: connected" % where, flush=True)
        ctx.wait()
        print("flaky: cancelled, cleaned up", flush=True)


class Brief(logging.Formatter):
    """One line per record, tracebacks left out for the demo."""

    def format(self, record):
        return "retry in %s: %s" % (record.subsystem, record.getMessage())


def main():
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(SubsystemFilter())
    handler.setFormatter(Brief())
    logging.getLogger("greenworks.runutil").addHandler(handler)

    configurer = Workers()
    registry = Components("example")
    provide_worker(registry, configurer)

    started = time.monotonic()
    with with_timeout(background(), 1.0) as ctx:
        run_provided_workers(ctx, registry)
    elapsed = time.monotonic() - started
    print(
        "stopped by the timeout after %.1f s: %d polls, %d flaky attempts with %d trace ids"
        % (elapsed, configurer.polls, len(configurer.traces), len(set(configurer.traces)))
    )
    ok = configurer.polls >= 5 and len(configurer.traces) == 3 and len(set(configurer.traces)) == 3
    ok = ok and elapsed < 3.0
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
