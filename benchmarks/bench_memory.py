"""
Memory per idle worker: 10k Dispatcher workers, 10k Runner workers, 10k raw parked greenlets.

Two raw baselines, one per kind of greenworks worker, so that each is judged
like for like. A Dispatcher worker is greenworks' own loop, parked in C on
its queue, so it is held against ``gevent.spawn(event.wait)``: a greenlet
parked in a C method, with no Python frame at all. A Runner worker always
runs the user's Python function (here ``ParkedWorker.run``, parked on its
context), and that function's frame, which the C-method baseline lacks, is
about 560 bytes of C stack that greenlet saves for any greenlet parked in
Python. So the Runner is judged against ``raw_worker``: the same parked
Python worker function ``bench_runner``'s hand-written reconciler spawns
(``gevent.spawn(raw_worker, task, tally)``, parked on its own ``Event``).
The Runner against the C-method baseline is still printed, as a note.

What is measured, and why: a parked greenlet costs about 7.6 KB, and most of
it is not on the Python heap. When a greenlet switches away, greenlet copies
the slice of C stack it used into a malloc'd buffer, and CPython 3.11 gives
each greenlet its own chunk of the frame "data stack", which it maps outside
the object allocator. ``tracemalloc`` sees neither, so it reports about half
the real cost. The figure the target is judged on is therefore the growth of
the process's resident set (RSS, from ``/proc/self/statm``) while the
workers are created and parked, divided by their number, measured in a
fresh interpreter per repetition so that memory freed by an earlier
repetition cannot be reused and hide the cost. ``tracemalloc`` runs in a
separate child (it adds its own overhead to RSS) and is reported alongside
as the Python-heap share.

Run one child by hand: ``python -m benchmarks.bench_memory KIND COUNT {rss,tracemalloc}``.
"""

import json
import os
import subprocess
import sys

from benchmarks._harness import Measured, scenario

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

KINDS = ("dispatcher", "runner", "raw", "raw_worker")


def _rss():
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _settle(gevent, rounds=3):
    for _ in range(rounds):
        gevent.sleep(0)


def child(kind, count, how):
    """Create *count* idle workers of *kind* and print a JSON line with the bytes each costs."""
    import gc
    import tracemalloc

    import gevent
    from gevent.event import Event

    if how == "tracemalloc":
        tracemalloc.start()

    def measure():
        gc.collect()
        if how == "tracemalloc":
            return tracemalloc.get_traced_memory()[0]
        return _rss()

    tasks = None
    if kind in ("runner", "raw_worker"):
        from benchmarks.bench_runner import ParkedWorker, Tally, make_tasks, raw_worker

        tasks = make_tasks(0, count)
        tally = Tally()
        if kind == "runner":
            from greenworks.runner import Runner
    elif kind == "dispatcher":
        from greenworks.dispatcher import Dispatcher
    _settle(gevent)
    before = measure()

    stop = None
    if kind == "raw":
        event = Event()
        greenlets = [gevent.spawn(event.wait) for _ in range(count)]
        _settle(gevent)
        live = sum(1 for g in greenlets if not g.dead)

        def stop():
            event.set()
            gevent.joinall(greenlets)
            return sum(1 for g in greenlets if not g.dead)

    elif kind == "raw_worker":
        greenlets = [gevent.spawn(raw_worker, task, tally) for task in tasks]
        _settle(gevent)
        live = sum(1 for g in greenlets if not g.dead) if tally.starts == count else -1

        def stop():
            gevent.killall(greenlets)
            return count - tally.exits

    elif kind == "dispatcher":
        dispatcher = Dispatcher(1000, count, count)
        dispatcher.run()
        _settle(gevent)
        stats = dispatcher.stats()
        live = dispatcher.worker_count if stats.get("idle", count) == count else -1

        def stop():
            dispatcher.quit()
            return dispatcher.worker_count

    elif kind == "runner":
        runner = Runner(lambda task: ParkedWorker(task, tally))
        runner.apply_tasks(tasks)
        _settle(gevent)
        live = len(runner.workers()) if tally.starts == count else -1

        def stop():
            runner.stop()
            return count - tally.exits

    else:
        raise ValueError("kind must be one of %s, got %r" % (", ".join(KINDS), kind))

    after = measure()
    left = stop()
    print(
        json.dumps(
            {"kind": kind, "count": count, "how": how, "bytes": after - before, "live": live, "left": left}
        )
    )


def run_child(kind, count, how):
    """Run :func:`child` in a fresh interpreter and return its JSON report."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory", kind, str(count), how],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError("memory child %s/%s failed (%d):\n%s" % (kind, how, proc.returncode, proc.stderr))
    return json.loads(proc.stdout.strip().splitlines()[-1])


@scenario(
    "memory",
    "memory per idle worker, 10k workers: Dispatcher / Runner workers vs raw parked greenlets",
    requires=("greenworks.dispatcher", "greenworks.runner"),
    sizes={
        "full": {"workers": 10000, "tracemalloc": True},
        "quick": {"workers": 2000, "tracemalloc": False},
        "tiny": {"workers": 50, "tracemalloc": True},
    },
    repeat={"full": 3},
)
def memory(bench):
    """Bytes of RSS per idle worker, each repetition in a fresh interpreter (see module docstring)."""
    count = bench.params["workers"]

    def variant(kind, how):
        def measure():
            report = run_child(kind, count, how)
            # A worker only counts if it was alive and parked when measured and gone after stop.
            done = report["live"] if report["left"] == 0 else -1
            return Measured(report["bytes"] / count, done, count, total_bytes=report["bytes"])

        return measure

    names = {
        "raw": "raw parked greenlets",
        "raw_worker": "raw parked Python workers",
        "dispatcher": "greenworks Dispatcher",
        "runner": "greenworks Runner",
    }
    kinds = ["raw", "raw_worker"]
    if bench.available:
        kinds = ["dispatcher", "runner", "raw", "raw_worker"]
    medians = bench.interleave(
        [(names[k], "baseline" if k.startswith("raw") else "greenworks", variant(k, "rss")) for k in kinds],
        label="rss",
        unit="B",
    )
    if bench.params["tracemalloc"]:
        bench.note("tracemalloc sees only the Python heap: shown for information, not judged")
        bench.interleave(
            [
                (names[k], "baseline" if k.startswith("raw") else "greenworks", variant(k, "tracemalloc"))
                for k in kinds
            ],
            label="tracemalloc (info)",
            unit="B",
        )
    raw = medians[names["raw"]]
    raw_worker = medians[names["raw_worker"]]
    dispatcher = medians.get(names["dispatcher"])
    runner = medians.get(names["runner"])
    bench.target(
        "dispatcher RSS bytes/worker vs raw parked",
        dispatcher and dispatcher / raw,
        "<=",
        1.05,
        detail=dispatcher and "%.0f B vs %.0f B" % (dispatcher, raw),
    )
    bench.target(
        "runner RSS bytes/worker vs raw parked Python worker",
        runner and runner / raw_worker,
        "<=",
        1.05,
        detail=runner and "%.0f B vs %.0f B" % (runner, raw_worker),
    )
    if runner:
        bench.note(
            "runner vs raw parked greenlets (a C method, no Python frame; not judged, see the module"
            " docstring): %.2fx, %.0f B vs %.0f B" % (runner / raw, runner, raw)
        )


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    if len(sys.argv) != 4 or sys.argv[3] not in ("rss", "tracemalloc"):
        sys.exit("usage: python -m benchmarks.bench_memory {%s} COUNT {rss,tracemalloc}" % ",".join(KINDS))
    child(sys.argv[1], int(sys.argv[2]), sys.argv[3])
