"""Shows GreenExecutor replacing ThreadPoolExecutor in a monkey-patched program, nothing else changed.

``fetch_all`` is ordinary ``concurrent.futures`` code: it submits blocking
calls, collects them with ``as_completed``, maps over the rest and cancels
what it no longer needs. It runs once on ``ThreadPoolExecutor(8)`` and once
on ``GreenExecutor(8)`` and prints the same lines; the ``time.sleep`` in
``lookup`` stands for a blocking socket call, which monkey-patching makes
cooperative. Then ``Dispatcher.imap_unordered`` does the same kind of fan-out
over an elastic pool, gevent ``Pool.imap_unordered`` style.

Expected output::

    ThreadPoolExecutor: first done: c (10 ms)
    ThreadPoolExecutor: all: a=300 b=200 c=10 d=400
    ThreadPoolExecutor: map: [2, 4, 6]
    ThreadPoolExecutor: cancelled before it ran: True
    GreenExecutor: first done: c (10 ms)
    GreenExecutor: all: a=300 b=200 c=10 d=400
    GreenExecutor: map: [2, 4, 6]
    GreenExecutor: cancelled before it ran: True
    executor stats: submitted=7 completed=7 failed=0
    imap_unordered: [10, 200, 300, 400]
"""

from gevent import monkey

monkey.patch_all()

import concurrent.futures as cf
import threading
import time

from greenworks.dispatcher import Dispatcher
from greenworks.executor import GreenExecutor

# c finishes first by 190 ms: a loaded machine that stalls the process for 10 ms between
# two submissions must not reorder the "first done" line (it did, with 10 ms steps).
DELAYS = {"a": 300, "b": 200, "c": 10, "d": 400}


def lookup(key):
    time.sleep(DELAYS[key] / 1000.0)
    return key, DELAYS[key]


def fetch_all(pool, label):
    futures = [pool.submit(lookup, key) for key in DELAYS]
    first = next(cf.as_completed(futures))
    print("%s: first done: %s (%d ms)" % (label, *first.result()))
    done, _ = cf.wait(futures)
    results = sorted(f.result() for f in done)
    print("%s: all: %s" % (label, " ".join("%s=%d" % pair for pair in results)))
    print("%s: map: %s" % (label, list(pool.map(lambda x: 2 * x, [1, 2, 3]))))
    # One worker busy, one call queued behind it: the queued one can be cancelled.
    gate = threading.Event()
    with type(pool)(1) as single:
        single.submit(gate.wait)
        queued = single.submit(print, "never printed")
        print("%s: cancelled before it ran: %s" % (label, queued.cancel()))
        gate.set()


def main():
    with cf.ThreadPoolExecutor(8) as pool:
        fetch_all(pool, "ThreadPoolExecutor")
    with GreenExecutor(8) as pool:
        fetch_all(pool, "GreenExecutor")
    s = pool.stats()
    print(
        "executor stats: submitted=%d completed=%d failed=%d" % (s["submitted"], s["completed"], s["failed"])
    )
    dispatcher = Dispatcher(100, 0, 8, task_timeout=None)
    dispatcher.run()
    print("imap_unordered: %s" % sorted(v for _, v in dispatcher.imap_unordered(lookup, DELAYS)))
    dispatcher.quit()


if __name__ == "__main__":
    main()
