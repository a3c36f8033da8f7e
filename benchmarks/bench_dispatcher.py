"""
Dispatcher scenarios: trivial tasks, result handles, wake-up cost, I/O-like tasks.

Every variant gets the same task objects and the same way of waiting for the
work to finish; only the pool differs. Pools are built and warmed before the
clock starts and stopped after it stops: these scenarios measure the steady
state of moving tasks, not start-up.
"""

import gevent
from gevent.event import AsyncResult, Event
from gevent.pool import Pool
from gevent.queue import SimpleQueue

from benchmarks._harness import Measured, Stopwatch, scenario

DISPATCHER = "greenworks.dispatcher"


class Tally:
    """Counts work done by tasks; optionally sets ``event`` when ``n`` reaches ``goal``."""

    __slots__ = ("event", "goal", "n")

    def __init__(self, goal=None):
        self.n = 0
        self.goal = goal
        self.event = Event()


def _drain(tally, goal):
    # The shape every variant shares: yield to the hub until the workers caught up.
    while tally.n < goal:
        gevent.sleep(0)


class RawQueuePool:
    """The baseline pool: a ``SimpleQueue`` and *size* long-lived worker greenlets."""

    def __init__(self, size, with_results=False):
        self.queue = SimpleQueue()
        target = self._work_with_results if with_results else self._work
        self.workers = [gevent.spawn(target) for _ in range(size)]
        gevent.sleep(0)

    def _work(self):
        get = self.queue.get
        while True:
            task = get()
            if task is None:
                return
            task()

    def _work_with_results(self):
        get = self.queue.get
        while True:
            item = get()
            if item is None:
                return
            fn, args, result = item
            try:
                result.set(fn(*args))
            except Exception as exc:
                result.set_exception(exc)

    def submit(self, fn, *args):
        result = AsyncResult()
        self.queue.put((fn, args, result))
        return result

    def live(self):
        return sum(1 for g in self.workers if not g.dead)

    def close(self):
        for _ in self.workers:
            self.queue.put(None)
        gevent.joinall(self.workers)


def _started_dispatcher(dispatcher_module, max_buffered, workers, **options):
    dispatcher = dispatcher_module.Dispatcher(max_buffered, workers, workers, **options)
    dispatcher.run()
    gevent.sleep(0)
    return dispatcher


def _executed(dispatcher):
    return dispatcher.stats().get("executed")


# -- trivial tasks, in bursts -------------------------------------------------


def _trivial_variants(bench, bursts, burst, workers, max_buffered):
    total = bursts * burst

    def run_bursts(put, tally):
        watch = Stopwatch()
        for index in range(bursts):
            for _ in range(burst):
                put(task)
            _drain(tally, (index + 1) * burst)
        watch.stop()
        return watch

    tally = Tally()

    def task():
        tally.n += 1

    def greenworks():
        tally.n = 0
        dispatcher = _started_dispatcher(bench.modules[DISPATCHER], max_buffered, workers)
        try:
            live = dispatcher.worker_count
            watch = run_bursts(dispatcher.dispatch, tally)
            executed = _executed(dispatcher)
        finally:
            dispatcher.quit()
        # The pool's own count must agree with the tasks' count, and the pool
        # must have had its workers and let them all go.
        ok = executed == total and live == workers and dispatcher.worker_count == 0
        return Measured(
            watch,
            tally.n if ok else -1,
            total,
            workers=live,
            executed=executed,
            after_quit=dispatcher.worker_count,
        )

    def raw():
        tally.n = 0
        pool = RawQueuePool(workers)
        try:
            live = pool.live()
            watch = run_bursts(pool.queue.put, tally)
        finally:
            pool.close()
        return Measured(watch, tally.n, total, workers=live)

    def gevent_pool():
        tally.n = 0
        pool = Pool(workers)
        try:
            watch = run_bursts(pool.spawn, tally)
        finally:
            pool.join()
        return Measured(watch, tally.n, total, pool_size=workers)

    variants = [
        ("raw SimpleQueue + %d workers" % workers, "baseline", raw),
        ("gevent Pool(%d).spawn" % workers, "baseline", gevent_pool),
    ]
    if bench.available:
        variants.insert(0, ("greenworks Dispatcher.dispatch", "greenworks", greenworks))
    return variants


@scenario(
    "trivial",
    "trivial tasks in bursts: Dispatcher(1000, 100, 100).dispatch vs raw queue pool vs Pool(100).spawn",
    requires=(DISPATCHER,),
    sizes={
        "full": {"bursts": 100, "burst": 1000, "workers": 100, "max_buffered": 1000},
        "quick": {"bursts": 10, "burst": 1000, "workers": 100, "max_buffered": 1000},
        "tiny": {"bursts": 3, "burst": 50, "workers": 5, "max_buffered": 50},
    },
    repeat={"full": 7},
)
def trivial(bench):
    """Throughput of no-op tasks: *bursts* bursts of *burst* dispatches, draining in between.

    Each burst puts *burst* tasks into the pool without yielding, then yields
    (``gevent.sleep(0)``) until the workers ran all of them; the buffer holds a
    whole burst, so no task overflows. ``Pool.spawn`` blocks once 100 are in
    flight, which is how that pool applies backpressure.
    """
    p = bench.params
    total = p["bursts"] * p["burst"]
    variants = _trivial_variants(bench, p["bursts"], p["burst"], p["workers"], p["max_buffered"])
    medians = bench.interleave(variants, per=total)
    gw = medians.get("greenworks Dispatcher.dispatch")
    raw = medians["raw SimpleQueue + %d workers" % p["workers"]]
    pool = medians["gevent Pool(%d).spawn" % p["workers"]]
    gw_name = "greenworks Dispatcher.dispatch"
    raw_name = "raw SimpleQueue + %d workers" % p["workers"]
    pool_name = "gevent Pool(%d).spawn" % p["workers"]
    bench.target(
        "throughput vs Pool.spawn", gw and pool / gw, ">=", 10.0, detail=bench.cpu_ratio(pool_name, gw_name)
    )
    bench.target(
        "throughput vs raw queue pool", gw and raw / gw, ">=", 0.7, detail=bench.cpu_ratio(raw_name, gw_name)
    )


# -- with a result handle -----------------------------------------------------


@scenario(
    "submit",
    "tasks with a result handle: Dispatcher.submit vs raw queue + AsyncResult per task",
    requires=(DISPATCHER,),
    sizes={
        "full": {"bursts": 100, "burst": 1000, "workers": 100, "max_buffered": 1000},
        "quick": {"bursts": 10, "burst": 1000, "workers": 100, "max_buffered": 1000},
        "tiny": {"bursts": 3, "burst": 50, "workers": 5, "max_buffered": 50},
    },
    repeat={"full": 7},
)
def submit(bench):
    """Throughput of ``submit(fn, i)`` returning an AsyncResult, read back after each burst.

    Same bursts as ``trivial``; after each burst the caller waits for every
    handle and sums the results, so the work is checked through the handles
    themselves (sum of ``i`` over the run).
    """
    p = bench.params
    bursts, burst, workers = p["bursts"], p["burst"], p["workers"]
    total = bursts * burst
    expected_sum = total * (total - 1) // 2

    def identity(i):
        return i

    def run_bursts(submit_fn):
        checked = 0
        value_sum = 0
        watch = Stopwatch()
        i = 0
        for _ in range(bursts):
            handles = []
            for _ in range(burst):
                handles.append(submit_fn(identity, i))
                i += 1
            for handle in handles:
                value_sum += handle.get()
                checked += 1
        watch.stop()
        return watch, checked, value_sum

    def greenworks():
        dispatcher = _started_dispatcher(bench.modules[DISPATCHER], p["max_buffered"], workers)
        try:
            watch, checked, value_sum = run_bursts(dispatcher.submit)
        finally:
            dispatcher.quit()
        if value_sum != expected_sum:
            checked = -1
        return Measured(watch, checked, total, value_sum=value_sum)

    def raw():
        pool = RawQueuePool(workers, with_results=True)
        try:
            watch, checked, value_sum = run_bursts(pool.submit)
        finally:
            pool.close()
        if value_sum != expected_sum:
            checked = -1
        return Measured(watch, checked, total, value_sum=value_sum)

    variants = [("raw queue + AsyncResult", "baseline", raw)]
    if bench.available:
        variants.insert(0, ("greenworks Dispatcher.submit", "greenworks", greenworks))
    medians = bench.interleave(variants, per=total)
    gw = medians.get("greenworks Dispatcher.submit")
    bench.target(
        "submit throughput vs raw + AsyncResult",
        gw and medians["raw queue + AsyncResult"] / gw,
        ">=",
        0.85,
        detail=bench.cpu_ratio("raw queue + AsyncResult", "greenworks Dispatcher.submit"),
    )


# -- one wake-up per task -----------------------------------------------------


def wakeup_loop(put, task, wakeups):
    """Time *wakeups* rounds of ``put(task)`` then ``gevent.sleep(0)``: one worker woken per round."""
    watch = Stopwatch()
    for _ in range(wakeups):
        put(task)
        gevent.sleep(0)
    watch.stop()
    return watch


@scenario(
    "wakeup",
    "one wake-up per task with 10 / 1,000 / 10,000 idle workers: dispatch + sleep(0) vs raw SimpleQueue",
    requires=(DISPATCHER,),
    sizes={
        "full": {"idle": [10, 1000, 10000], "wakeups": 5000},
        "quick": {"idle": [10, 1000, 10000], "wakeups": 200},
        "tiny": {"idle": [2, 20], "wakeups": 20},
    },
    repeat={"full": 7},
)
def wakeup(bench):
    """Cost of waking one idle worker: dispatch one task, then ``gevent.sleep(0)``; repeat.

    The pool is fixed (min = max = idle count) and every worker is parked
    before the clock starts, so each task wakes exactly one sleeping worker.
    gevent's ``Queue.get`` costs grow with the number of waiters; greenworks
    keeps its idle workers on its own structure to stay flat.
    """
    p = bench.params
    wakeups = p["wakeups"]
    tally = Tally()

    def task():
        tally.n += 1

    def loop(put):
        return wakeup_loop(put, task, wakeups)

    def make_greenworks(idle):
        def greenworks():
            tally.n = 0
            dispatcher = _started_dispatcher(bench.modules[DISPATCHER], 1000, idle)
            try:
                live = dispatcher.worker_count
                watch = loop(dispatcher.dispatch)
                after = dispatcher.worker_count
            finally:
                dispatcher.quit()
            if live != idle or after != idle:
                return Measured(watch, -1, wakeups, workers=live, workers_after=after)
            return Measured(watch, tally.n, wakeups, workers=live)

        return greenworks

    def make_raw(idle):
        def raw():
            tally.n = 0
            pool = RawQueuePool(idle)
            try:
                live = pool.live()
                watch = loop(pool.queue.put)
            finally:
                pool.close()
            if live != idle:
                return Measured(watch, -1, wakeups, workers=live)
            return Measured(watch, tally.n, wakeups, workers=live)

        return raw

    variants = []
    for idle in p["idle"]:
        if bench.available:
            variants.append(("greenworks, %d idle" % idle, "greenworks", make_greenworks(idle)))
        variants.append(("raw SimpleQueue, %d idle" % idle, "baseline", make_raw(idle)))
    medians = bench.interleave(variants, per=wakeups)
    low, high = p["idle"][0], p["idle"][-1]
    gw_low = medians.get("greenworks, %d idle" % low)
    gw_high = medians.get("greenworks, %d idle" % high)
    raw_ratio = medians["raw SimpleQueue, %d idle" % high] / medians["raw SimpleQueue, %d idle" % low]
    bench.target(
        "wake-up cost %d idle / %d idle" % (high, low),
        gw_high and gw_high / gw_low,
        "<=",
        1.5,
        detail="; ".join(
            x
            for x in (
                bench.cpu_ratio("greenworks, %d idle" % high, "greenworks, %d idle" % low),
                "raw SimpleQueue: %.2fx" % raw_ratio,
            )
            if x
        ),
    )


# -- I/O-like tasks -----------------------------------------------------------


@scenario(
    "io",
    "I/O-like: tasks of sleep(0.001) on 1,000 workers: Dispatcher vs raw queue pool vs Pool(1000).spawn",
    requires=(DISPATCHER,),
    sizes={
        "full": {"tasks": 10000, "workers": 1000, "sleep": 0.001},
        "quick": {"tasks": 2000, "workers": 200, "sleep": 0.001},
        "tiny": {"tasks": 40, "workers": 8, "sleep": 0.001},
    },
    # Each repetition lasts a few timer rounds, so one late wake-up of this
    # process weighs a lot: take more of them.
    repeat={"full": 11},
)
def io(bench):
    """Wall time to run *tasks* tasks that each ``gevent.sleep(0.001)``, all dispatched at once.

    The buffer holds every task (no overflow); the caller then waits on an
    Event the last task sets. About ``tasks / workers`` rounds of 1 ms is the
    floor; the rest is the pool's overhead and the event loop's timer slack.
    """
    p = bench.params
    total, workers, pause = p["tasks"], p["workers"], p["sleep"]
    tally = Tally(goal=total)

    def task():
        gevent.sleep(pause)
        tally.n += 1
        if tally.n == tally.goal:
            tally.event.set()

    def reset():
        tally.n = 0
        tally.event.clear()

    def timed(put):
        watch = Stopwatch()
        for _ in range(total):
            put(task)
        tally.event.wait()
        watch.stop()
        return watch

    def greenworks():
        reset()
        dispatcher = _started_dispatcher(bench.modules[DISPATCHER], total, workers)
        try:
            live = dispatcher.worker_count
            watch = timed(dispatcher.dispatch)
        finally:
            dispatcher.quit()
        return Measured(watch, tally.n, total, workers=live)

    def raw():
        reset()
        pool = RawQueuePool(workers)
        try:
            watch = timed(pool.queue.put)
        finally:
            pool.close()
        return Measured(watch, tally.n, total, workers=workers)

    def gevent_pool():
        reset()
        pool = Pool(workers)
        try:
            watch = timed(pool.spawn)
        finally:
            pool.join()
        return Measured(watch, tally.n, total, pool_size=workers)

    raw_name = "raw SimpleQueue + %d workers" % workers
    pool_name = "gevent Pool(%d).spawn" % workers
    variants = [(raw_name, "baseline", raw), (pool_name, "baseline", gevent_pool)]
    if bench.available:
        variants.insert(0, ("greenworks Dispatcher", "greenworks", greenworks))
    medians = bench.interleave(variants)
    gw = medians.get("greenworks Dispatcher")
    floor = total / workers * pause
    bench.note("floor: %d rounds of %.3g s = %.3g s" % (total // workers, pause, floor))
    gw_name = "greenworks Dispatcher"
    bench.target(
        "wall time vs raw queue pool",
        gw and gw / medians[raw_name],
        "<=",
        1.0,
        detail=bench.cpu_ratio(gw_name, raw_name),
    )
    bench.target(
        "wall time vs Pool.spawn",
        gw and gw / medians[pool_name],
        "<=",
        0.5,
        detail=bench.cpu_ratio(gw_name, pool_name),
    )
