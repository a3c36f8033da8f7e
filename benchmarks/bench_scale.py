"""
Scale curves: how the per-task cost moves with the size of the job.

Three curves, each a table in the report, a ``curves`` entry in
``results.json`` and a PNG chart (``benchmarks/charts/``, drawn by
:mod:`benchmarks.charts` when matplotlib is installed):

- **per-task cost, 1e3..1e6 trivial tasks** in bursts of 1,000 (the
  ``trivial`` scenario's shape): ``Dispatcher.dispatch`` vs a raw
  ``SimpleQueue`` with 100 worker greenlets vs ``gevent.pool.Pool(100).spawn``.
  ``Pool.spawn`` costs a greenlet per task (tens of microseconds), so it
  stops at ``pool_max`` tasks to keep the run short; its points beyond read
  n/a.
- **wake-up latency, 10..100k idle workers**: one task, then
  ``gevent.sleep(0)``, repeated (the ``wakeup`` scenario's shape): the
  Dispatcher's idle workers vs a raw ``SimpleQueue``'s waiters. Sizes above
  ``idle_once_above`` are measured once (no warm-up): starting and stopping
  100k workers takes seconds.
- **Runner.apply_tasks, 1k..100k tasks**: one ``apply_tasks`` of N new tasks
  on an empty Runner (every worker started, timed to the first
  ``gevent.sleep(0)`` after it), then one re-apply of an equal set of fresh
  task objects (nothing to start or stop), vs the hand-written dict-diff
  reconciler of ``bench_runner``. Sizes above ``apply_once_above`` are
  measured once (no warm-up): 100k workers take seconds to start and stop.

Every point checks its work: the tasks counted themselves, the idle pools
had all their workers, the reconcilers started N workers and stopped none.
Targets: the Dispatcher's per-task cost at the largest size is within 1.5x
of its cost at the smallest (flat), and so is its wake-up cost at the most
idle workers vs the fewest.
"""

import gevent
from gevent.pool import Pool

from benchmarks._harness import Measured, Stopwatch, scenario
from benchmarks.bench_dispatcher import (
    DISPATCHER,
    RawQueuePool,
    Tally,
    _drain,
    _started_dispatcher,
    wakeup_loop,
)
from benchmarks.bench_runner import RUNNER, ParkedWorker, RawReconciler, make_tasks
from benchmarks.bench_runner import Tally as RunnerTally

GW_TASKS = "greenworks Dispatcher.dispatch"
RAW_TASKS = "raw SimpleQueue + %d workers"
POOL_TASKS = "gevent Pool(%d).spawn"
GW_WAKE = "greenworks Dispatcher"
RAW_WAKE = "raw SimpleQueue"
GW_APPLY = "greenworks Runner.apply_tasks"
RAW_APPLY = "raw dict diff + spawn"


def _curve(bench, key, title, x_label, xs, unit="s"):
    curves = bench.result.setdefault("curves", {})
    curves[key] = {"title": title, "x_label": x_label, "x": list(xs), "unit": unit, "series": {}}
    return curves[key]


def _point(curve, variant, value):
    curve["series"].setdefault(variant, []).append(value)


def _print_curve(bench, curve):
    """Print *curve* as a table: one row per size, one column per variant (per-task seconds)."""
    from benchmarks._harness import format_value

    names = list(curve["series"])
    bench.out("  %s" % curve["title"])
    bench.out("    %-10s " % curve["x_label"] + " ".join("%-26s" % n[:26] for n in names))
    for index, x in enumerate(curve["x"]):
        cells = []
        for name in names:
            values = curve["series"][name]
            value = values[index] if index < len(values) else None
            cells.append("%-26s" % format_value(value, curve["unit"]))
        bench.out("    %-10s " % f"{x:,}" + " ".join(cells))


def _tasks_curve(bench, sizes, workers, pool_max):
    curve = _curve(bench, "tasks", "per-task cost of trivial tasks", "tasks", sizes)
    raw_name, pool_name = RAW_TASKS % workers, POOL_TASKS % workers
    burst = 1000
    tally = Tally()

    def task():
        tally.n += 1

    def run_bursts(put, total):
        watch = Stopwatch()
        for index in range(max(1, total // burst)):
            for _ in range(min(burst, total)):
                put(task)
            _drain(tally, (index + 1) * min(burst, total))
        watch.stop()
        return watch

    for total in sizes:

        def greenworks(total=total):
            tally.n = 0
            dispatcher = _started_dispatcher(bench.modules[DISPATCHER], burst, workers)
            try:
                watch = run_bursts(dispatcher.dispatch, total)
                executed = dispatcher.stats().get("executed")
            finally:
                dispatcher.quit()
            return Measured(watch, tally.n if executed == total else -1, total, executed=executed)

        def raw(total=total):
            tally.n = 0
            pool = RawQueuePool(workers)
            try:
                watch = run_bursts(pool.queue.put, total)
            finally:
                pool.close()
            return Measured(watch, tally.n, total)

        def gevent_pool(total=total):
            tally.n = 0
            pool = Pool(workers)
            try:
                watch = run_bursts(pool.spawn, total)
            finally:
                pool.join()
            return Measured(watch, tally.n, total)

        variants = [(raw_name, "baseline", raw)]
        if total <= pool_max:
            variants.append((pool_name, "baseline", gevent_pool))
        if bench.available:
            variants.insert(0, (GW_TASKS, "greenworks", greenworks))
        medians = bench.interleave(variants, label="tasks %d" % total, per=total)
        for name in ([GW_TASKS] if bench.available else []) + [raw_name, pool_name]:
            value = medians.get(name)
            _point(curve, name, None if value is None else value / total)
    _print_curve(bench, curve)
    return curve


def _wakeup_curve(bench, idles, wakeups, once_above):
    curve = _curve(bench, "wakeup", "wake-up latency by idle workers, per wake-up", "idle", idles)
    tally = Tally()

    def task():
        tally.n += 1

    def loop(put):
        return wakeup_loop(put, task, wakeups)

    for idle in idles:

        def greenworks(idle=idle):
            tally.n = 0
            dispatcher = _started_dispatcher(bench.modules[DISPATCHER], 1000, idle)
            try:
                live = dispatcher.worker_count
                watch = loop(dispatcher.dispatch)
                after = dispatcher.worker_count
            finally:
                dispatcher.quit()
            done = tally.n if live == idle and after == idle else -1
            return Measured(watch, done, wakeups, workers=live)

        def raw(idle=idle):
            tally.n = 0
            pool = RawQueuePool(idle)
            try:
                live = pool.live()
                watch = loop(pool.queue.put)
            finally:
                # Not pool.close(): one put per worker costs time linear in the
                # waiters each, quadratic in all (minutes at 100k idle workers).
                gevent.killall(pool.workers)
            return Measured(watch, tally.n if live == idle else -1, wakeups, workers=live)

        variants = [(RAW_WAKE, "baseline", raw)]
        if bench.available:
            variants.insert(0, (GW_WAKE, "greenworks", greenworks))
        # 10k-100k workers take seconds to start and stop: the largest sizes are measured once.
        once = idle > once_above
        medians = bench.interleave(
            variants,
            label="wakeup %d idle" % idle,
            per=wakeups,
            repeat=1 if once else None,
            warmup=False if once else None,
        )
        for name in ([GW_WAKE] if bench.available else []) + [RAW_WAKE]:
            _point(curve, name, medians[name] / wakeups)
    _print_curve(bench, curve)
    return curve


def _apply_curves(bench, sizes, once_above):
    start = _curve(bench, "apply", "Runner.apply_tasks of N new tasks, per task", "tasks", sizes)
    again = _curve(bench, "reapply", "Runner.apply_tasks of an equal set, per task", "tasks", sizes)
    for total in sizes:
        reapplied = {}

        def greenworks(total=total, reapplied=reapplied):
            tally = RunnerTally()
            runner = bench.modules[RUNNER].Runner(lambda task: ParkedWorker(task, tally))
            try:
                first, equal = make_tasks(0, total), make_tasks(0, total)
                watch = Stopwatch()
                runner.apply_tasks(first)
                gevent.sleep(0)
                watch.stop()
                second = Stopwatch()
                runner.apply_tasks(equal)
                second.stop()
                reapplied.setdefault(GW_APPLY, []).append(second.wall)
                ok = tally.starts == total and tally.exits == 0 and len(runner.tasks()) == total
            finally:
                runner.stop()
            return Measured(watch, total if ok else -1, total, starts=tally.starts, reapply=second.wall)

        def raw(total=total, reapplied=reapplied):
            tally = RunnerTally()
            reconciler = RawReconciler(tally)
            try:
                first, equal = make_tasks(0, total), make_tasks(0, total)
                watch = Stopwatch()
                reconciler.apply(first)
                gevent.sleep(0)
                watch.stop()
                second = Stopwatch()
                reconciler.apply(equal)
                second.stop()
                reapplied.setdefault(RAW_APPLY, []).append(second.wall)
                ok = tally.starts == total and tally.exits == 0 and len(reconciler.greenlets) == total
            finally:
                reconciler.stop()
            return Measured(watch, total if ok else -1, total, starts=tally.starts, reapply=second.wall)

        variants = [(RAW_APPLY, "baseline", raw)]
        if bench.available:
            variants.insert(0, (GW_APPLY, "greenworks", greenworks))
        # Starting and stopping 10k-100k workers takes seconds (and grows faster
        # than linearly, for both): sizes above `once_above` are measured once.
        once = total > once_above
        repeat = 1 if once else bench.repeat
        medians = bench.interleave(
            variants, label="apply %d" % total, per=total, repeat=repeat, warmup=False if once else None
        )
        for name in ([GW_APPLY] if bench.available else []) + [RAW_APPLY]:
            _point(start, name, medians[name] / total)
            # The warm-up round is in `reapplied` too: the median of the measured rounds only.
            kept = reapplied[name][-repeat:]
            _point(again, name, sorted(kept)[len(kept) // 2] / total)
    _print_curve(bench, start)
    _print_curve(bench, again)


@scenario(
    "scale",
    "scale curves: per-task cost 1e3..1e6 tasks, wake-up 10..100k idle, apply_tasks 1k..100k",
    requires=(DISPATCHER, RUNNER),
    sizes={
        "full": {
            "tasks": [1000, 10000, 100000, 1000000],
            "workers": 100,
            "pool_max": 100000,
            "idle": [10, 100, 1000, 10000, 100000],
            "wakeups": 1000,
            "idle_once_above": 1000,
            "apply": [1000, 10000, 100000],
            "apply_once_above": 1000,
        },
        "quick": {
            "tasks": [1000, 10000],
            "workers": 100,
            "pool_max": 10000,
            "idle": [10, 1000],
            "wakeups": 200,
            "idle_once_above": 1000,
            "apply": [1000, 5000],
            "apply_once_above": 5000,
        },
        "tiny": {
            "tasks": [100, 1000],
            "workers": 5,
            "pool_max": 100,
            "idle": [2, 20],
            "wakeups": 20,
            "idle_once_above": 20,
            "apply": [20, 50],
            "apply_once_above": 20,
        },
    },
    repeat={"full": 3},
    warmup=False,
)
def scale(bench):
    """Three curves (see the module docstring); targets: the Dispatcher's curves stay flat."""
    p = bench.params
    tasks = _tasks_curve(bench, p["tasks"], p["workers"], p["pool_max"])
    wake = _wakeup_curve(bench, p["idle"], p["wakeups"], p["idle_once_above"])
    _apply_curves(bench, p["apply"], p["apply_once_above"])
    gw_tasks = tasks["series"].get(GW_TASKS)
    gw_wake = wake["series"].get(GW_WAKE)
    bench.target(
        "per-task cost at %s tasks / at %s" % ("{:,}".format(p["tasks"][-1]), "{:,}".format(p["tasks"][0])),
        gw_tasks and gw_tasks[-1] / gw_tasks[0],
        "<=",
        1.5,
    )
    bench.target(
        "wake-up cost at %s idle / at %s idle" % ("{:,}".format(p["idle"][-1]), "{:,}".format(p["idle"][0])),
        gw_wake and gw_wake[-1] / gw_wake[0],
        "<=",
        1.5,
        detail="raw SimpleQueue: %.2fx" % (wake["series"][RAW_WAKE][-1] / wake["series"][RAW_WAKE][0]),
    )
