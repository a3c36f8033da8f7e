"""
A JobRunner process for the leadership chaos tests (tests/test_leadership_chaos.py).

Two ways to run it:

- ``python _chaos_app.py <redis url> <dir> <tick> <ttl>``: one process running
  ``JobRunner(tick, leader=RedisLock(url, "leader"), leader_ttl=ttl)`` until
  SIGTERM (then it stops the runner, releasing the lease, and exits 0).
- as gunicorn's app (``_chaos_app:application``, see _chaos_gunicorn_conf.py),
  configured by ``CHAOS_REDIS``, ``CHAOS_DIR``, ``CHAOS_TICK`` and ``CHAOS_TTL``;
  every worker starts the same runner through ``greenworks.gunicorn.runtime``.

Two leader-only jobs, ``a`` and ``b``, append ``<job>@<tick> <pid> <time>``
to ``<dir>/runs.log`` (one O_APPEND write per line, so lines of several
processes never interleave). ``<dir>/status.<pid>.json`` is rewritten every
50 ms with the runner's ``snapshot()``, ``stats()`` and the leadership events
seen, so the test reads a stale leader's counters without asking it.

Pauses, armed by the test creating a file in ``<dir>/ctl.<pid>/`` (removed
when it fires, so each fires once):

- ``stop-in-is-run``: job ``a``'s ``is_run`` - after the runner renewed its
  lease and before it claims the tick, the worst moment - SIGSTOPs this
  process (the test sends SIGCONT).
- ``block-in-is-run``: there, unpatched CPU work that never yields to the
  hub for at least *seconds* (the file's content) and until ``<dir>/go``
  exists.
- ``block-in-run``: the same CPU work inside job ``a``'s ``run``.

Each pause writes ``<dir>/paused.<pid>`` (``<kind> <tick>``) first.
"""

import json
import logging
import os
import signal
import sys
import time

from gevent import monkey

if __name__ == "__main__":
    monkey.patch_all()

import gevent
import gevent.event
import zope.event

from greenworks.coordination import RedisLock
from greenworks.events import LeadershipAcquired, LeadershipLost
from greenworks.jobs import JobRunner


class Chaos:
    """One process's runner, its jobs, its pauses and its status file."""

    def __init__(self, url, directory, tick, ttl):
        self.dir = directory
        self.log = os.path.join(directory, "runs.log")
        self.ctl = os.path.join(directory, "ctl.%d" % os.getpid())
        os.makedirs(self.ctl, exist_ok=True)
        self.events = []
        zope.event.subscribers.append(self._event)
        lock = RedisLock(url, "leader", ttl=ttl)
        self.runner = JobRunner(tick=tick, leader=lock, leader_ttl=ttl, name="chaos")
        self.runner.set_jobs([AppendJob("a", self), AppendJob("b", self)])
        self._status = gevent.spawn(self._write_status)

    def _event(self, event):
        if isinstance(event, LeadershipAcquired):
            self.events.append(["acquired", None, time.time()])
        elif isinstance(event, LeadershipLost):
            self.events.append(["lost", event.reason, time.time()])

    def _write_status(self):
        path = os.path.join(self.dir, "status.%d.json" % os.getpid())
        while True:
            status = {
                "pid": os.getpid(),
                "time": time.time(),
                "stats": self.runner.stats(),
                "snapshot": self.runner.snapshot(),
                "events": self.events,
            }
            with open(path + ".tmp", "w") as f:
                json.dump(status, f, default=str)
            os.replace(path + ".tmp", path)
            gevent.sleep(0.05)

    def armed(self, kind):
        """Whether the test armed pause *kind* (disarming it)."""
        try:
            with open(os.path.join(self.ctl, kind)) as f:
                seconds = float(f.read() or 0)
            os.unlink(os.path.join(self.ctl, kind))
        except FileNotFoundError:
            return None
        return seconds

    def pause(self, kind, at, seconds):
        with open(os.path.join(self.dir, "paused.%d" % os.getpid()), "w") as f:
            f.write("%s %s\n" % (kind, at.isoformat()))
        if kind.startswith("stop"):
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        go = os.path.join(self.dir, "go")
        began = time.monotonic()  # time.monotonic and os.path.exists never yield to the hub
        while time.monotonic() - began < seconds or not os.path.exists(go):
            sum(range(1000))

    def stop(self):
        self.runner.stop_and_wait(timeout=5)
        self._status.kill()


class AppendJob:
    """A leader-only job appending ``<id>@<tick> <pid> <time>`` to the shared log."""

    def __init__(self, job_id, chaos):
        self.id = job_id
        self.chaos = chaos
        self._at = None

    def get_id(self):
        return self.id

    def is_run(self, now):
        self._at = now
        if self.id == "a":
            for kind in ("stop-in-is-run", "block-in-is-run"):
                seconds = self.chaos.armed(kind)
                if seconds is not None:
                    self.chaos.pause(kind, now, seconds)
        return True

    def run(self):
        line = "%s@%s %d %.6f\n" % (self.id, self._at.isoformat(), os.getpid(), time.time())
        fd = os.open(self.chaos.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        if self.id == "a":
            seconds = self.chaos.armed("block-in-run")
            if seconds is not None:
                self.chaos.pause("block-in-run", self._at, seconds)


def main(argv):
    url, directory, tick, ttl = argv[0], argv[1], float(argv[2]), float(argv[3])
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    chaos = Chaos(url, directory, tick, ttl)
    done = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, done.set)
    print("started", os.getpid(), flush=True)
    done.wait()
    chaos.stop()


# -- under gunicorn --------------------------------------------------------------

if __name__ != "__main__" and "CHAOS_REDIS" in os.environ:
    from greenworks.gunicorn import runtime

    def start_chaos():
        env = os.environ
        return Chaos(env["CHAOS_REDIS"], env["CHAOS_DIR"], float(env["CHAOS_TICK"]), float(env["CHAOS_TTL"]))

    runtime.add(start_chaos, stop=Chaos.stop, name="chaos")


def application(environ, start_response):
    body = b"worker %d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    main(sys.argv[1:])
