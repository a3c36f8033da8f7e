"""Reconcile health-check pollers with a Runner while the set of endpoints changes.

The script starts three loopback HTTP servers (``api`` and ``db`` answer 200,
``cache`` answers 503), then a :class:`greenworks.runner.Runner` whose workers
poll one endpoint each every 0.2 s with the monkey-patched ``urllib.request``.
Mid-run the desired set changes from {api, db} to {db, cache}: ``apply_tasks``
starts a poller for ``cache``, cancels the one for ``api`` and returns once it
has exited; ``db``'s poller is left alone. The script checks the outcome and
exits 1 if anything is off.

Expected output::

    started worker for api (http://127.0.0.1:.../health)
    started worker for db (http://127.0.0.1:.../health)
    phase 1: running api, db; last status api=200 db=200
    endpoints change: remove api, add cache
    stopped worker for api after ... checks
    apply_tasks returned after api's worker exited
    phase 2: running cache, db; last status cache=503 db=200
    db's worker kept running through the change: started once
    stopped worker for ...
    stopped worker for ...
    snapshot: 2 tasks, 0 workers alive after stop
    all checks passed
"""

from gevent import monkey

monkey.patch_all()

import dataclasses
import sys
import urllib.error
import urllib.request

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from greenworks.runner import Runner

POLL_INTERVAL = 0.2
# The example's own guard: every wait below is bounded, so a failure shows as "FAILED", not a hang.
STEP_TIMEOUT = 3.0


def make_app(status):
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain")])
        return [status.encode()]

    return app


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A task: what to poll. Frozen, so it is hashable and immutable."""

    name: str
    url: str


class HealthChecker:
    """A worker: polls one endpoint until its context is cancelled."""

    # Loopback only: bypass any proxy configured in the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.statuses = []
        self.runs = 0
        self.checked_twice = Event()
        self.exited = Event()

    def probe(self):
        try:
            with self.opener.open(self.endpoint.url, timeout=1.0) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def run(self, ctx):
        self.runs += 1
        print("started worker for %s (%s)" % (self.endpoint.name, self.endpoint.url))
        try:
            while True:
                self.statuses.append(self.probe())
                if len(self.statuses) >= 2:
                    self.checked_twice.set()
                if not ctx.sleep(POLL_INTERVAL):
                    break
        finally:
            print("stopped worker for %s after %d checks" % (self.endpoint.name, len(self.statuses)))
            self.exited.set()


def running(runner):
    return sorted(s.task.name for s in runner.status() if s.state.value == "running")


def main():
    servers = {}
    for name, status in [("api", "200 OK"), ("db", "200 OK"), ("cache", "503 Service Unavailable")]:
        server = WSGIServer(("127.0.0.1", 0), make_app(status), log=None)
        server.start()
        servers[name] = server
    endpoints = {
        name: Endpoint(name, "http://127.0.0.1:%d/health" % server.server_port)
        for name, server in servers.items()
    }
    checkers = {}

    def new_worker(endpoint):
        checker = checkers[endpoint.name] = HealthChecker(endpoint)
        return checker

    runner = Runner(new_worker, stop_timeout=2.0, name="health")
    failures = []

    def check(condition, what):
        if not condition:
            failures.append(what)
            print("FAILED: %s" % what)

    def last(name):
        return checkers[name].statuses[-1] if checkers[name].statuses else None

    try:
        runner.apply_tasks([endpoints["api"], endpoints["db"]])
        polled = gevent.wait(
            [checkers["api"].checked_twice, checkers["db"].checked_twice], timeout=STEP_TIMEOUT
        )
        check(len(polled) == 2, "api and db were polled twice")
        print(
            "phase 1: running %s; last status api=%s db=%s"
            % (", ".join(running(runner)), last("api"), last("db"))
        )
        check(running(runner) == ["api", "db"], "phase 1 runs api and db")

        print("endpoints change: remove api, add cache")
        runner.apply_tasks([endpoints["db"], endpoints["cache"]], timeout=STEP_TIMEOUT)
        check(checkers["api"].exited.is_set(), "api's worker exited before apply_tasks returned")
        print("apply_tasks returned after api's worker exited")
        check(checkers["cache"].checked_twice.wait(timeout=STEP_TIMEOUT), "cache was polled twice")
        print(
            "phase 2: running %s; last status cache=%s db=%s"
            % (", ".join(running(runner)), last("cache"), last("db"))
        )
        check(running(runner) == ["cache", "db"], "phase 2 runs cache and db")
        check(last("cache") == 503 and last("db") == 200, "health results are 503 for cache and 200 for db")
        runs = checkers["db"].runs
        times = "once" if runs == 1 else "%d times" % runs
        print("db's worker kept running through the change: started %s" % times)
        check(checkers["db"].runs == 1, "db's worker was not restarted")
    finally:
        runner.stop()
        for server in servers.values():
            server.stop()
    snapshot = runner.snapshot()
    print("snapshot: %d tasks, %d workers alive after stop" % (len(snapshot["tasks"]), snapshot["workers"]))
    check(snapshot["workers"] == 0, "no worker alive after stop()")
    if failures:
        print("%d checks failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
