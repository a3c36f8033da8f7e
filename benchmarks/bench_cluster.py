"""
ClusterRunner scenarios: apply 10k tasks (vs a plain Runner), and Redis round trips per heartbeat.

Both run one member against a real ``redis-server`` started on 127.0.0.1 for
the scenario (no persistence); without ``redis-server`` on PATH or redis-py
the greenworks variants are skipped and the targets read SKIP. The group is
marked as used before (its first-use quiet period, one ttl, is not what is
measured), and the member has joined before the clock starts.
"""

import contextlib
import dataclasses
import shutil
import socket
import subprocess
import tempfile
import time

import gevent
from gevent.event import Event

from benchmarks._harness import Measured, Stopwatch, scenario

CLUSTER = "greenworks.cluster"
RUNNER = "greenworks.runner"
REDIS_SERVER = shutil.which("redis-server")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """The usual task: a frozen dataclass, keyed by its repr in every process."""

    host: str
    port: int


def make_tasks(count):
    return [Endpoint("10.0.%d.%d" % (i // 250, i % 250), 8000 + i % 1000) for i in range(count)]


class Tally:
    __slots__ = ("starts", "exits")

    def __init__(self):
        self.starts = 0
        self.exits = 0

    def new_worker(self, task):
        def run(ctx):
            self.starts += 1
            try:
                ctx.wait()
            finally:
                self.exits += 1

        return run


@contextlib.contextmanager
def redis_server():
    """Yield the URL of a fresh redis-server on a free loopback port; stop it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="greenworks-bench-redis-")
    proc = subprocess.Popen(
        [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", directory],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    try:
        for _ in range(500):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                gevent.sleep(0.01)
        else:
            raise RuntimeError("redis-server did not start on port %d" % port)
        yield "redis://127.0.0.1:%d/0" % port, client
    finally:
        client.close()
        proc.kill()
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _missing(bench):
    if REDIS_SERVER is None:
        return "redis-server is not on PATH"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed"
    return None


_groups = iter(range(1 << 30))


def _member(bench, client, url, tally, **membership_kw):
    """A started, joined ClusterRunner alone in a fresh group that has been used before."""
    cluster = bench.modules[CLUSTER]
    group = "bench%d" % next(_groups)
    client.set("greenworks:cluster:{%s}:epoch" % group, 0)
    membership = cluster.RedisMembership(url, group, lease_registry=False, **membership_kw)
    runner = cluster.ClusterRunner(tally.new_worker, membership=membership, name="bench")
    runner.apply_tasks([])  # joins: one heartbeat round
    return runner, membership


def _until(predicate, limit=30.0):
    deadline = time.perf_counter() + limit
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        gevent.sleep(0)
    return True


@scenario(
    "cluster_apply",
    "apply 10k new tasks: ClusterRunner (1 member, Redis on loopback) vs Runner",
    requires=(CLUSTER, RUNNER),
    sizes={"full": {"tasks": 10000}, "quick": {"tasks": 2000}, "tiny": {"tasks": 50}},
)
def cluster_apply(bench):
    """Time ``apply_tasks`` of N fresh tasks until every worker has started.

    The ClusterRunner's call includes computing N keys (``repr`` of a frozen
    dataclass), the rendezvous share, one heartbeat round that claims N
    leases in one Lua call, and starting N workers on its inner Runner. The
    Runner is the same work without a cluster. Checked: N starts, counted by
    the workers, and (cluster) N leases held.
    """
    total = bench.params["tasks"]
    reason = _missing(bench)
    if reason:
        bench.note("greenworks variants skipped: %s" % reason)
        bench.target("ClusterRunner vs Runner, %d tasks" % total, None, "<=", 5.0)
        return

    with redis_server() as (url, client):

        def clustered():
            tally = Tally()
            runner, _ = _member(bench, client, url, tally)
            tasks = make_tasks(total)
            try:
                watch = Stopwatch()
                runner.apply_tasks(tasks)
                _until(lambda: tally.starts >= total)
                watch.stop()
                owned = len(runner.owned())
            finally:
                runner.stop()
            done = tally.starts if owned == total else -1
            return Measured(watch, done, total, leases=owned, starts=tally.starts)

        def plain():
            tally = Tally()
            runner = bench.modules[RUNNER].Runner(tally.new_worker, stop_timeout=10.0)
            tasks = make_tasks(total)
            try:
                watch = Stopwatch()
                runner.apply_tasks(tasks)
                _until(lambda: tally.starts >= total)
                watch.stop()
            finally:
                runner.stop()
            return Measured(watch, tally.starts, total, starts=tally.starts)

        medians = bench.interleave(
            [("greenworks ClusterRunner", "greenworks", clustered), ("greenworks Runner", "baseline", plain)],
            per=total,
        )
    bench.target(
        "ClusterRunner vs Runner, %d tasks" % total,
        medians["greenworks ClusterRunner"] / medians["greenworks Runner"],
        "<=",
        5.0,
        detail=bench.cpu_ratio("greenworks ClusterRunner", "greenworks Runner"),
    )


class CountingMembership:
    """Wraps a membership's ``beat`` to count the beats and know when one is in flight."""

    def __init__(self, membership):
        self.membership = membership
        self.beats = 0
        self.in_flight = False
        self.seconds = 0.0
        self.idle = Event()
        self.idle.set()
        original = membership.beat

        def beat(*args, **kwargs):
            self.in_flight = True
            self.idle.clear()
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.beats += 1
                self.in_flight = False
                self.idle.set()

        membership.beat = beat

    def sample(self, client):
        """Return ``(beats, script calls on the server)`` read between two beats, exactly."""
        while True:
            self.idle.wait()
            beats, seconds = self.beats, self.seconds
            stats = client.info("commandstats")
            if not self.in_flight and self.beats == beats:
                calls = sum(
                    stats.get(name, {"calls": 0})["calls"]
                    for name in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_script")
                )
                return beats, calls, seconds


@scenario(
    "cluster_heartbeat",
    "Redis round trips per ClusterRunner heartbeat: 100 vs 10,000 owned tasks",
    requires=(CLUSTER,),
    sizes={
        "full": {"small": 100, "large": 10000, "beats": 40},
        "quick": {"small": 100, "large": 2000, "beats": 10},
        "tiny": {"small": 10, "large": 50, "beats": 4},
    },
    repeat={"full": 3},
)
def cluster_heartbeat(bench):
    """Count the scripts the server ran per heartbeat of a member owning N tasks (steady state).

    The member heartbeats every 50 ms (ttl 3 s: starting 10k workers blocks
    the hub for most of a second, longer than a short ttl would allow). The
    counts are read on the server (``INFO commandstats``: EVALSHA, EVAL, SCRIPT) between two
    beats, so the figure is exact; the wall time per beat is shown for
    information. Checked: every task running and leased during the window.
    """
    p = bench.params
    reason = _missing(bench)
    if reason:
        bench.note("greenworks variants skipped: %s" % reason)
        bench.target("round trips per heartbeat, %d vs %d tasks" % (p["large"], p["small"]), None, "<=", 1.0)
        return

    with redis_server() as (url, client):

        def variant(count):
            def run():
                tally = Tally()
                runner, membership = _member(bench, client, url, tally, ttl=3.0, heartbeat=0.05)
                counter = CountingMembership(membership)
                try:
                    runner.apply_tasks(make_tasks(count))
                    _until(lambda: tally.starts >= count and len(runner.owned()) == count)
                    gevent.sleep(0.1)  # past the round that followed the claims
                    beats0, calls0, seconds0 = counter.sample(client)
                    _until(lambda: counter.beats >= beats0 + p["beats"])
                    beats1, calls1, seconds1 = counter.sample(client)
                    running = tally.starts - tally.exits
                    owned = len(runner.owned())
                finally:
                    runner.stop()
                beats = beats1 - beats0
                done = count if running == owned == count else -1
                return Measured(
                    (calls1 - calls0) / beats,
                    done,
                    count,
                    beats=beats,
                    seconds_per_beat=(seconds1 - seconds0) / beats,
                )

            return run

        small, large = "%d tasks" % p["small"], "%d tasks" % p["large"]
        medians = bench.interleave(
            [(large, "greenworks", variant(p["large"])), (small, "baseline", variant(p["small"]))],
            unit="calls",
        )
        result = bench.result["measurements"][bench.name]
        for name in (small, large):
            seconds = sorted(w["seconds_per_beat"] for w in result[name]["work"])
            bench.note(
                "%s: %.3f ms per beat (client wall time, median)" % (name, seconds[len(seconds) // 2] * 1e3)
            )
    bench.target(
        "round trips per heartbeat, %d vs %d tasks" % (p["large"], p["small"]),
        medians[large] / medians[small],
        "<=",
        1.0,
        detail="%g vs %g per beat" % (medians[large], medians[small]),
    )
