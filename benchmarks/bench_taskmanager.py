"""
TaskManager scenario: 10k named short tasks, from ``go`` to done, vs ``gevent.spawn`` + join.

The task objects (a name and a counter) are built before the clock starts on
both sides; the clock then covers submitting every task and waiting until
each one ran and, for the manager, until its name is free again (the task
is "done" in the manager's own terms, not only executed).
"""

import gevent
from gevent.event import Event
from zope.interface import implementer

from benchmarks._harness import Measured, Stopwatch, scenario
from greenworks.interfaces import IManagedTask

TASKMANAGER = "greenworks.taskmanager"


class Tally:
    __slots__ = ("event", "goal", "n")

    def __init__(self, goal):
        self.n = 0
        self.goal = goal
        self.event = Event()

    def hit(self):
        self.n += 1
        if self.n == self.goal:
            self.event.set()


@implementer(IManagedTask)
class NamedTask:
    """An `IManagedTask` that only counts that it ran."""

    __slots__ = ("_name", "tally")

    def __init__(self, name, tally):
        self._name = name
        self.tally = tally

    def name(self):
        return self._name

    def execute(self, ctx):
        self.tally.hit()


def raw_task(tally):
    tally.hit()


@scenario(
    "taskmanager",
    "10k named short tasks go -> done: TaskManager.go vs gevent.spawn + join",
    requires=(TASKMANAGER,),
    sizes={
        "full": {"tasks": 10000, "workers": 100},
        "quick": {"tasks": 2000, "workers": 100},
        "tiny": {"tasks": 50, "workers": 5},
    },
    repeat={"full": 7},
)
def taskmanager(bench):
    """Throughput of named tasks on a fixed pool (min = max = *workers*) vs one greenlet per task.

    Checked: every task counted its own run, and afterwards the manager
    tracks no task and still has its workers.
    """
    p = bench.params
    total, workers = p["tasks"], p["workers"]

    def greenworks():
        tally = Tally(total)
        tasks = [NamedTask("task-%d" % i, tally) for i in range(total)]
        manager = bench.modules[TASKMANAGER].TaskManager(workers, workers, 60.0)
        try:
            gevent.sleep(0)
            go = manager.go
            watch = Stopwatch()
            for task in tasks:
                go(task)
            tally.event.wait()
            while manager.task_status():
                gevent.sleep(0)
            watch.stop()
            live = len(manager.status())
        finally:
            manager.stop()
        done = tally.n if live == workers else -1
        return Measured(watch, done, total, workers=live)

    def raw():
        tally = Tally(total)
        spawn = gevent.spawn
        watch = Stopwatch()
        greenlets = [spawn(raw_task, tally) for _ in range(total)]
        gevent.joinall(greenlets)
        watch.stop()
        return Measured(watch, tally.n, total)

    variants = [("gevent.spawn + joinall", "baseline", raw)]
    if bench.available:
        variants.insert(0, ("greenworks TaskManager.go", "greenworks", greenworks))
    medians = bench.interleave(variants, per=total)
    gw = medians.get("greenworks TaskManager.go")
    bench.target(
        "go -> done throughput vs spawn + join",
        gw and medians["gevent.spawn + joinall"] / gw,
        ">=",
        0.5,
        detail=bench.cpu_ratio("gevent.spawn + joinall", "greenworks TaskManager.go"),
    )
