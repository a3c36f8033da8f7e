"""
A plain WSGI app whose periodic jobs run once per cluster, not once per worker.

Every gunicorn worker process starts the same `JobRunner` (through
``greenworks.gunicorn.runtime``), and every runner contends for one
`FileLock` on each tick: only the holder runs the due jobs, and each job is
claimed per tick, so with ``-w 3`` each job still runs exactly once a tick.
Kill the leading worker (``kill -9``) and another one leads from the next
tick; recycle it (``max_requests``, HUP) and it hands over the lock on its way out.

Run it from this directory::

    gunicorn -c gunicorn.conf.py app:application
    curl -s 127.0.0.1:8000/status      # which worker leads, stats
    tail -f /tmp/greenworks-example-jobs.log

Settings come from the environment so the test suite can shrink them:
``GREENWORKS_EXAMPLE_TICK`` (seconds, default 60), ``GREENWORKS_EXAMPLE_LOCK``
and ``GREENWORKS_EXAMPLE_LOG`` (paths).
"""

import json
import logging
import os
import tempfile

from greenworks.coordination import FileLock
from greenworks.gunicorn import runtime
from greenworks.jobs import JobRunner

TICK = float(os.environ.get("GREENWORKS_EXAMPLE_TICK", "60"))
_TMP = tempfile.gettempdir()
LOCK = os.environ.get("GREENWORKS_EXAMPLE_LOCK", os.path.join(_TMP, "greenworks-example.lock"))
LOG = os.environ.get("GREENWORKS_EXAMPLE_LOG", os.path.join(_TMP, "greenworks-example-jobs.log"))

logger = logging.getLogger("example")


class AppendJob:
    """A job that appends ``<id>@<tick time> <pid>`` to the shared log file."""

    def __init__(self, job_id):
        self.id = job_id
        self._at = None

    def get_id(self):
        return self.id

    def is_run(self, now):
        self._at = now  # the tick being evaluated; run() follows within it
        return True

    def run(self):
        line = "%s@%s %d\n" % (self.id, self._at.isoformat(), os.getpid())
        # One O_APPEND write per line: lines from several processes never interleave.
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        logger.info("ran %s", line.strip())
        return line


def start_jobs():
    """Build this worker's JobRunner; the runtime stops it with stop_and_wait()."""
    runner = JobRunner(tick=TICK, leader=FileLock(LOCK), name="example")
    runner.set_jobs([AppendJob("report"), AppendJob("cleanup")])
    return runner


runtime.add(start_jobs, name="jobs")


def application(environ, start_response):
    """``/status``: this worker's runtime as JSON; anything else: a greeting."""
    if environ.get("PATH_INFO") == "/status":
        body = json.dumps(runtime.status(), default=str, indent=2).encode()
        content_type = "application/json"
    else:
        body = b"hello from worker %d\n" % os.getpid()
        content_type = "text/plain"
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
