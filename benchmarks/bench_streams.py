"""
Streams scenario: draining a Redis stream end to end on loopback.

Each repetition fills a fresh stream with the same messages (``task`` and a
JSON ``payload`` of two positional and one keyword argument; not timed),
then times from "start consuming" to "every message handled and acked":

- **greenworks** ``StreamConsumer`` with its own Dispatcher (defaults:
  batch 100, 10 workers), started inside the timed span;
- **hand-written loop**: what an application writes with redis-py alone,
  ``XREADGROUP COUNT 100`` -> ``json.loads`` -> call the handler -> one
  ``XACK`` of the batch, strictly in turn, on one greenlet;
- **rq** ``SimpleWorker.work(burst=True)`` over the same number of jobs
  enqueued beforehand (rq's ``SimpleWorker`` runs jobs in its own process,
  which is rq's fastest mode; the forking ``Worker`` is much slower). rq
  runs fewer messages (its ``rq_jobs`` size) and is compared per message.

The handler is the same no-op for all three. Values are seconds per
message; the targets compare throughput (the inverse). Every variant
checks its work: each handler call counted, and nothing left pending (the
consumer group's ``XPENDING`` is 0; rq's queue is empty and every job
finished). Needs ``redis-server`` on PATH and redis-py; the rq variant
needs ``pip install 'greenworks[bench]'`` (rq). Without them the variants
that cannot run are left out and their targets read SKIP, with a note.
"""

import json
import shutil
import socket
import subprocess
import tempfile

import gevent
from gevent.event import Event

from benchmarks._harness import Measured, Stopwatch, import_optional, scenario

STREAMS = "greenworks.streams"
GROUP = "bench"
PAYLOAD = json.dumps({"args": [1, "x"], "kwargs": {"k": 2}}, separators=(",", ":"))


class Count:
    """What the handler every variant runs counts; ``done`` is set once it reached ``goal``."""

    n = 0
    goal = 0
    done = Event()

    @classmethod
    def reset(cls, goal):
        cls.n, cls.goal = 0, goal
        cls.done.clear()


def handler(a, b, k):
    Count.n += 1
    if Count.n == Count.goal:
        Count.done.set()


def rq_job(a, b, k):
    """rq's job: the same handler (rq imports it by its dotted name, benchmarks.bench_streams.rq_job)."""
    Count.n += 1


class RedisServer:
    """A throw-away redis-server on 127.0.0.1, without persistence."""

    def __init__(self, binary):
        self.directory = tempfile.mkdtemp(prefix="greenworks-bench-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = "redis://127.0.0.1:%d/0" % self.port
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, *args, "--dir", self.directory],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in self.proc.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server did not start")
        self._drain = gevent.spawn(self.proc.stdout.read)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self._drain.join(timeout=5)
        self.proc.stdout.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def fill(client, stream, count):
    """Put *count* messages on a fresh *stream* with its group at the start (not timed)."""
    client.delete(stream)
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        pipe.xadd(stream, {"task": "work", "payload": PAYLOAD})
        if n % 1000 == 999:
            pipe.execute()
    pipe.execute()
    client.xgroup_create(stream, GROUP, "0")


def group_pending(client, stream):
    return client.xpending(stream, GROUP)["pending"]


@scenario(
    "streams",
    "Redis stream drain, end to end: StreamConsumer vs hand-written XREADGROUP/XACK loop vs rq",
    requires=(STREAMS,),
    sizes={
        "full": {"messages": 20000, "rq_jobs": 2000},
        "quick": {"messages": 2000, "rq_jobs": 200},
        "tiny": {"messages": 150, "rq_jobs": 20},
    },
    repeat={"full": 7},
)
def streams(bench):
    """Messages/s of a drained backlog; targets: >= 0.8x the hand-written loop, ahead of rq."""
    binary = shutil.which("redis-server")
    redis, missing = import_optional("redis")
    if binary is None or redis is None:
        bench.note("skipped: %s" % (missing or "redis-server is not on PATH (Debian package redis-server)"))
        bench.target("drain throughput vs hand-written loop", None, ">=", 0.8)
        bench.target("drain throughput vs rq SimpleWorker", None, ">=", 1.0)
        return
    rq, rq_missing = import_optional("rq")
    if rq is None:
        bench.note("rq variant skipped: %s (pip install 'greenworks[bench]')" % rq_missing)
    total, rq_total = bench.params["messages"], bench.params["rq_jobs"]
    server = RedisServer(binary)
    client = redis.Redis.from_url(server.url, protocol=2)
    try:
        _measure(bench, server, client, rq, total, rq_total)
    finally:
        client.close()
        server.stop()


def _measure(bench, server, client, rq, total, rq_total):
    def greenworks():
        fill(client, "s:gw", total)
        Count.reset(total)
        consumer = bench.modules[STREAMS].StreamConsumer(server.url, "s:gw", GROUP, {"work": handler})
        watch = Stopwatch()
        consumer.start()
        Count.done.wait()
        while consumer.stats()["acked"] < total:  # the last acks are on the wire
            gevent.sleep(0.0005)
        watch.stop()
        clean = consumer.stop(10)
        left = group_pending(client, "s:gw")
        done = Count.n if clean and left == 0 else -1
        return Measured(watch.wall / total, done, total, cpu=watch.cpu / total, pending_after=left)

    def loop():
        fill(client, "s:loop", total)
        Count.reset(total)
        loads = json.loads
        watch = Stopwatch()
        handled = 0
        while handled < total:
            reply = client.xreadgroup(GROUP, "loop", {"s:loop": ">"}, count=100, block=1000)
            entries = reply[0][1] if reply else []
            for _message_id, fields in entries:
                fields[b"task"].decode()
                body = loads(fields[b"payload"])
                handler(*body["args"], **body["kwargs"])
            if entries:
                client.xack("s:loop", GROUP, *[message_id for message_id, _ in entries])
            handled += len(entries)
        watch.stop()
        left = group_pending(client, "s:loop")
        return Measured(watch.wall / total, Count.n if left == 0 else -1, total, cpu=watch.cpu / total)

    def rq_worker():
        queue = rq.Queue("bench", connection=client)
        queue.empty()
        with client.pipeline() as pipe:
            jobs = [rq.Queue.prepare_data(rq_job, (1, "x"), {"k": 2}) for _ in range(rq_total)]
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
        Count.reset(rq_total)
        worker = rq.SimpleWorker([queue], connection=client)
        before = queue.finished_job_registry.count
        watch = Stopwatch()
        worker.work(burst=True, logging_level="WARNING", with_scheduler=False)
        watch.stop()
        finished = queue.finished_job_registry.count - before
        done = Count.n if len(queue) == 0 and finished == rq_total else -1
        return Measured(watch.wall / rq_total, done, rq_total, cpu=watch.cpu / rq_total)

    variants = [("hand-written XREADGROUP/XACK loop", "baseline", loop)]
    if rq is not None:
        variants.append(("rq SimpleWorker", "baseline", rq_worker))
    if bench.available:
        variants.insert(0, ("greenworks StreamConsumer", "greenworks", greenworks))
    medians = bench.interleave(variants)
    for name, median in medians.items():
        bench.note("%s: %.0f messages/s (median)" % (name, 1.0 / median))
    gw = medians.get("greenworks StreamConsumer")
    loop_median = medians["hand-written XREADGROUP/XACK loop"]
    bench.target(
        "drain throughput vs hand-written loop",
        gw and loop_median / gw,
        ">=",
        0.8,
        detail=bench.cpu_ratio("hand-written XREADGROUP/XACK loop", "greenworks StreamConsumer"),
    )
    rq_median = medians.get("rq SimpleWorker")
    bench.target(
        "drain throughput vs rq SimpleWorker",
        gw and rq_median and rq_median / gw,
        ">=",
        1.0,
        detail=bench.cpu_ratio("rq SimpleWorker", "greenworks StreamConsumer") if rq_median else "rq missing",
    )
