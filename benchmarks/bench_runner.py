"""
Runner scenarios: reconcile a 10% change of 10k tasks, and re-apply an unchanged set.

Both sides start from the same state, built before the clock starts: 10k
tasks, each with a worker greenlet parked until it is told to stop. The
baseline is what an application writes by hand: a dict of ``task ->
greenlet``, a set difference, ``gevent.killall`` for the stale ones and
``gevent.spawn`` for the new ones.
"""

import dataclasses

import gevent
from gevent.event import Event
from zope.interface import implementer

from benchmarks._harness import Measured, Stopwatch, scenario
from greenworks.interfaces import IWorker

RUNNER = "greenworks.runner"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """The usual task: a frozen dataclass (hash and eq generated from its fields)."""

    host: str
    port: int


def make_tasks(start, count):
    """Return *count* fresh tasks numbered from *start* (new objects every call)."""
    return [
        Endpoint("10.0.%d.%d" % (i // 250, i % 250), 8000 + i % 1000) for i in range(start, start + count)
    ]


class Tally:
    __slots__ = ("exits", "starts")

    def __init__(self):
        self.starts = 0
        self.exits = 0


@implementer(IWorker)
class ParkedWorker:
    """A greenworks worker: counts its start, parks until its context is done, counts its exit."""

    __slots__ = ("tally", "task")

    def __init__(self, task, tally):
        self.task = task
        self.tally = tally

    def run(self, ctx):
        self.tally.starts += 1
        try:
            ctx.wait()
        finally:
            self.tally.exits += 1


def raw_worker(task, tally):
    """The baseline worker: parks on its own Event until killed."""
    tally.starts += 1
    try:
        Event().wait()
    finally:
        tally.exits += 1


class RawReconciler:
    """Hand-written reconciliation: dict diff, ``killall`` stale, ``spawn`` new."""

    def __init__(self, tally):
        self.tally = tally
        self.greenlets = {}

    def apply(self, tasks):
        desired = dict.fromkeys(tasks)
        current = self.greenlets
        if desired.keys() == current.keys():
            # The common case, and the cheapest check found (see README): nothing to do.
            return
        stale = [task for task in current if task not in desired]
        doomed = [current.pop(task) for task in stale]
        for task in desired:
            if task not in current:
                current[task] = gevent.spawn(raw_worker, task, self.tally)
        if doomed:
            gevent.killall(doomed, block=True)

    def stop(self):
        gevent.killall(list(self.greenlets.values()), block=True)
        self.greenlets.clear()


def _gw_runner(bench, tally):
    runner_module = bench.modules[RUNNER]
    return runner_module.Runner(lambda task: ParkedWorker(task, tally))


def _sizes(bench):
    p = bench.params
    return p["tasks"], p["tasks"] * p["replace_pct"] // 100


@scenario(
    "reconcile",
    "reconcile 10k tasks, replace 10%: Runner.apply_tasks vs raw dict diff + killall/spawn",
    requires=(RUNNER,),
    sizes={
        "full": {"tasks": 10000, "replace_pct": 10},
        "quick": {"tasks": 2000, "replace_pct": 10},
        "tiny": {"tasks": 50, "replace_pct": 10},
    },
)
def reconcile(bench):
    """Time one ``apply_tasks`` that drops 10% of 10k running tasks and adds as many new ones.

    The clock covers the call (which returns once the stale workers exited)
    and one ``gevent.sleep(0)`` so that the new workers have started on both
    sides. Checked: starts and exits counted by the workers themselves, and
    the tracked set equals the new desired set.
    """
    total, replaced = _sizes(bench)

    def fixtures():
        old = make_tasks(0, total)
        new = make_tasks(replaced, total)  # drops the first `replaced`, adds as many after the end
        return old, new

    def check(tally, tracked, new):
        ok = tally.starts == total + replaced and tally.exits == replaced and set(tracked) == set(new)
        return replaced if ok else -1

    def greenworks():
        tally = Tally()
        old, new = fixtures()
        runner = _gw_runner(bench, tally)
        try:
            runner.apply_tasks(old)
            gevent.sleep(0)
            watch = Stopwatch()
            runner.apply_tasks(new)
            gevent.sleep(0)
            watch.stop()
            done = check(tally, runner.tasks(), new)
            counts = {"starts": tally.starts, "exits": tally.exits, "workers": len(runner.workers())}
        finally:
            runner.stop()
        return Measured(watch, done, replaced, **counts)

    def raw():
        tally = Tally()
        old, new = fixtures()
        reconciler = RawReconciler(tally)
        try:
            reconciler.apply(old)
            gevent.sleep(0)
            watch = Stopwatch()
            reconciler.apply(new)
            gevent.sleep(0)
            watch.stop()
            done = check(tally, reconciler.greenlets, new)
            live = sum(1 for g in reconciler.greenlets.values() if not g.dead)
            counts = {"starts": tally.starts, "exits": tally.exits, "workers": live}
        finally:
            reconciler.stop()
        return Measured(watch, done, replaced, **counts)

    variants = [("raw dict diff + killall/spawn", "baseline", raw)]
    if bench.available:
        variants.insert(0, ("greenworks Runner.apply_tasks", "greenworks", greenworks))
    medians = bench.interleave(variants)
    gw = medians.get("greenworks Runner.apply_tasks")
    bench.target(
        "replace %d of %d vs raw" % (replaced, total),
        gw and gw / medians["raw dict diff + killall/spawn"],
        "<=",
        1.5,
        detail=bench.cpu_ratio("greenworks Runner.apply_tasks", "raw dict diff + killall/spawn"),
    )


@scenario(
    "reapply",
    "re-apply the same 10k tasks: Runner.apply_tasks vs raw dict diff",
    requires=(RUNNER,),
    sizes={
        "full": {"tasks": 10000},
        "quick": {"tasks": 2000},
        "tiny": {"tasks": 50},
    },
    repeat={"full": 9},
)
def reapply(bench):
    """Time ``apply_tasks`` with an equal set of fresh task objects: nothing to start or stop.

    The baseline is the quickest hand-written diff measured: ``dict.fromkeys``
    of the new tasks, then comparing its keys view with the tracked dict's
    (about 2x faster than two membership scans, 3x faster than set
    differences, for frozen-dataclass tasks). Checked: no worker started or
    exited during the call, and every task is still tracked.
    """
    total = bench.params["tasks"]

    def check(tally, tracked):
        ok = tally.starts == total and tally.exits == 0 and len(tracked) == total
        return total if ok else -1

    def greenworks():
        tally = Tally()
        runner = _gw_runner(bench, tally)
        try:
            runner.apply_tasks(make_tasks(0, total))
            gevent.sleep(0)
            again = make_tasks(0, total)
            watch = Stopwatch()
            runner.apply_tasks(again)
            watch.stop()
            gevent.sleep(0)
            done = check(tally, runner.tasks())
            counts = {"starts": tally.starts, "exits": tally.exits}
        finally:
            runner.stop()
        return Measured(watch, done, total, **counts)

    def raw():
        tally = Tally()
        reconciler = RawReconciler(tally)
        try:
            reconciler.apply(make_tasks(0, total))
            gevent.sleep(0)
            again = make_tasks(0, total)
            watch = Stopwatch()
            reconciler.apply(again)
            watch.stop()
            gevent.sleep(0)
            done = check(tally, reconciler.greenlets)
            counts = {"starts": tally.starts, "exits": tally.exits}
        finally:
            reconciler.stop()
        return Measured(watch, done, total, **counts)

    variants = [("raw dict diff", "baseline", raw)]
    if bench.available:
        variants.insert(0, ("greenworks Runner.apply_tasks", "greenworks", greenworks))
    medians = bench.interleave(variants, per=total)
    gw = medians.get("greenworks Runner.apply_tasks")
    bench.target(
        "re-apply %d unchanged vs raw diff" % total,
        gw and gw / medians["raw dict diff"],
        "<=",
        2.0,
        detail=bench.cpu_ratio("greenworks Runner.apply_tasks", "raw dict diff"),
    )
