"""
Dispatcher probes that run.py has no scenario for, measured the way the harness does.

    .venv/bin/python benchmarks/dispatcher_probes.py [--repeat N]

- block: N dispatch(task, block=True) into a full buffer (Dispatcher(100, 10, 10,
  overflow="reject"), so a task that did not wait would show as rejected) vs raw
  SimpleQueue(maxsize=100).put with 10 worker greenlets; trivial tasks.
- io: 10k tasks of sleep(0.001), all dispatched at once, at C=100 and C=1000
  workers, vs a raw SimpleQueue pool of the same size (wall time).
- wakeup: dispatch one task + sleep(0), 5,000 times, with 10 and 100,000 idle workers.

Each variant alternates with its baseline; medians of --repeat runs (default 7).
A standalone script (not part of ``make bench``): issue 21's goals for blocking
dispatch, I/O at C=100 and 100k idle workers were judged with it.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.queue import SimpleQueue  # noqa: E402

from greenworks.dispatcher import Dispatcher  # noqa: E402


class Tally:
    __slots__ = ("n", "goal", "event")

    def __init__(self):
        self.n = 0
        self.goal = 0
        self.event = Event()


def raw_pool(size, maxsize=None):
    queue = SimpleQueue(maxsize)

    def work():
        get = queue.get
        while True:
            task = get()
            if task is None:
                return
            task()

    workers = [gevent.spawn(work) for _ in range(size)]
    gevent.sleep(0)

    def close():
        for _ in workers:
            queue.put(None)
        gevent.joinall(workers)

    return queue, close


def started(max_buffered, workers, **kw):
    dispatcher = Dispatcher(max_buffered, workers, workers, **kw)
    dispatcher.run()
    gevent.sleep(0)
    return dispatcher


def block_pair(n=20000, cap=100, workers=10):
    tally = Tally()

    def task():
        tally.n += 1

    def drain(t):
        while tally.n < n:
            gevent.sleep(0)
        return time.perf_counter() - t

    def gw():
        d = started(cap, workers, overflow="reject")
        dispatch = d.dispatch
        tally.n = 0
        t = time.perf_counter()
        # The call a user writes, in the loop itself (a wrapper would add its own cost).
        for _ in range(n):
            dispatch(task, True)
        elapsed = drain(t)
        ok = d.stats()["rejected"] == 0
        d.quit()
        assert ok
        return elapsed

    def raw():
        queue, close = raw_pool(workers, cap)
        put = queue.put
        tally.n = 0
        t = time.perf_counter()
        for _ in range(n):
            put(task)
        elapsed = drain(t)
        close()
        return elapsed

    return gw, raw, n


def io_pair(workers, n=10000, pause=0.001):
    tally = Tally()

    def task():
        gevent.sleep(pause)
        tally.n += 1
        if tally.n == n:
            tally.event.set()

    def run(put):
        tally.n = 0
        tally.event.clear()
        t = time.perf_counter()
        for _ in range(n):
            put(task)
        tally.event.wait()
        return time.perf_counter() - t

    def gw():
        d = started(n, workers)
        elapsed = run(d.dispatch)
        d.quit()
        return elapsed

    def raw():
        queue, close = raw_pool(workers)
        elapsed = run(queue.put)
        close()
        return elapsed

    return gw, raw, n


def wakeup_variant(idle, n=5000):
    tally = Tally()

    def task():
        tally.n += 1

    def gw():
        d = started(1000, idle)
        assert d.stats()["idle"] == idle
        tally.n = 0
        t = time.perf_counter()
        for _ in range(n):
            d.dispatch(task)
            gevent.sleep(0)
        elapsed = time.perf_counter() - t
        ok = tally.n == n and d.worker_count == idle
        d.quit()
        assert ok
        return elapsed

    return gw, n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat

    def pair(name, gw, raw, n, ratio_of):
        a, b = [], []
        for _ in range(repeat):
            a.append(gw())
            b.append(raw())
        ga, rb = statistics.median(a), statistics.median(b)
        print(
            "%-34s greenworks %8.1f ms (%6.0f ns/task)  raw %8.1f ms (%6.0f ns/task)  %s %.2fx"
            % (
                name,
                ga * 1e3,
                ga / n * 1e9,
                rb * 1e3,
                rb / n * 1e9,
                ratio_of,
                (rb / ga) if ratio_of == "raw/gw" else (ga / rb),
            )
        )

    gw, raw, n = block_pair()
    pair("block: dispatch(block=True)", gw, raw, n, "raw/gw")
    for c in (100, 1000):
        gw, raw, n = io_pair(c)
        pair("io: 10k x 1 ms, C=%d (wall)" % c, gw, raw, n, "gw/raw")
    lows, highs = [], []
    low, n = wakeup_variant(10)
    high, _ = wakeup_variant(100000)
    for _ in range(repeat):
        lows.append(low())
        highs.append(high())
    lo, hi = statistics.median(lows), statistics.median(highs)
    print(
        "wakeup: 10 idle %.2f us, 100,000 idle %.2f us per wake-up: %.2fx"
        % (lo / n * 1e6, hi / n * 1e6, hi / lo)
    )


if __name__ == "__main__":
    main()
