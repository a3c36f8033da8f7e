"""
The app of tests/test_metrics_gunicorn.py: each gunicorn worker runs a fast job LIMIT times.

Run by real ``gunicorn -k gevent -w 3`` with ``PROMETHEUS_MULTIPROC_DIR`` set.
Every run appends one line to ``GW_METRICS_LOG`` (the truth the test counts)
and, once the metrics saw a worker's last run, the worker says so on stderr.
"""

import os
import sys

import zope.event

from greenworks import metrics
from greenworks.events import JobFinished
from greenworks.gunicorn import runtime
from greenworks.jobs import JobRunner
from greenworks.status import wsgi_app

LOG = os.environ["GW_METRICS_LOG"]
TICK = float(os.environ.get("GW_METRICS_TICK", "0.2"))
LIMIT = int(os.environ.get("GW_METRICS_RUNS", "8"))


class Beat:
    """A job due on every tick until it ran LIMIT times in this process."""

    def __init__(self):
        self.runs = 0

    def get_id(self):
        return "beat"

    def is_run(self, now):
        return self.runs < LIMIT

    def run(self):
        self.runs += 1
        # One O_APPEND write per line: lines from several processes never interleave.
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"%d\n" % os.getpid())
        finally:
            os.close(fd)


def say(text):
    # One write per line: lines from several workers never interleave on the shared stderr.
    os.write(sys.stderr.fileno(), text.encode() + b"\n")


def said_done(event, seen=[0]):  # noqa: B006 - a per-process counter
    # Subscribed after metrics.install(): the counter moved before this runs.
    if isinstance(event, JobFinished) and event.job_id == "beat":
        seen[0] += 1
        if seen[0] == LIMIT:
            say("beats done in pid %d" % os.getpid())


def start_jobs():
    exported = metrics.install()
    zope.event.subscribers.append(said_done)
    runner = JobRunner(tick=TICK, name="beats")
    exported.register(runner)
    runner.set_jobs([Beat()])
    say("beats started in pid %d" % os.getpid())
    return runner


runtime.add(start_jobs, name="beats")
application = wsgi_app()
