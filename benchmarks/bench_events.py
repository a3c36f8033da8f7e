"""
Event scenario: what greenworks events cost, and what the hub watch costs.

Three groups, each variant on the same work:

- ``emit``: ``Lifecycle.emit`` of a `ComponentStopped`, with no subscriber
  (one list check, no event built) and with one no-op subscriber (the event
  built and handed over); the baseline is the bare loop. Reported per event.
- ``dispatch``: the trivial dispatch bursts of ``trivial``, with no
  subscriber and with one no-op subscriber installed. The Dispatcher emits no
  event per successful task, so a subscriber must not move this figure.
- ``switch``: greenlet switches (``gevent.sleep(0)`` ping-pong) with and
  without `greenworks.monitor.watch_hub` on: the cost of its switch hook.

Every variant that needs "no subscriber" empties ``zope.event.subscribers``
for its run and puts back what was there, so a subscriber left by the caller
does not skew it.
"""

import gevent
import zope.event

from benchmarks._harness import Measured, Stopwatch, scenario
from benchmarks.bench_dispatcher import Tally, _drain, _executed, _started_dispatcher

COMPONENT = "greenworks._component"
DISPATCHER = "greenworks.dispatcher"
MONITOR = "greenworks.monitor"


class Subscribers:
    """Run a block with exactly *subscribers* in ``zope.event.subscribers``; restore it after."""

    def __init__(self, *subscribers):
        self.subscribers = list(subscribers)

    def __enter__(self):
        self.saved = list(zope.event.subscribers)
        zope.event.subscribers[:] = self.subscribers
        return self

    def __exit__(self, *exc):
        zope.event.subscribers[:] = self.saved


class Counter:
    """The no-op subscriber: counts what it is handed, nothing else."""

    __slots__ = ("n",)

    def __init__(self):
        self.n = 0

    def __call__(self, event):
        self.n += 1


class Owner:
    """The component of the emitted events."""


def _emit_variants(bench, emits):
    component = bench.modules[COMPONENT]
    events = bench.modules["greenworks.events"]

    def emitting(subscribed):
        life = component.Lifecycle(Owner(), "bench", "bench", None, None, "benchmarks")
        emit, kind = life.emit, events.ComponentStopped
        counter = Counter()
        with Subscribers(*([counter] if subscribed else [])):
            watch = Stopwatch()
            for _ in range(emits):
                emit(kind, True)
            watch.stop()
        done = counter.n if subscribed else emits
        return Measured(watch, done, emits, received=counter.n)

    def bare():
        n = 0
        watch = Stopwatch()
        for _ in range(emits):
            n += 1
        watch.stop()
        return Measured(watch, n, emits)

    return [
        ("Lifecycle.emit, no subscriber", "greenworks", lambda: emitting(False)),
        ("Lifecycle.emit, one no-op subscriber", "greenworks", lambda: emitting(True)),
        ("bare loop", "baseline", bare),
    ]


def _dispatch_variants(bench, bursts, burst, workers, max_buffered):
    total = bursts * burst
    tally = Tally()

    def task():
        tally.n += 1

    def dispatching(subscribers):
        tally.n = 0
        with Subscribers(*subscribers):
            dispatcher = _started_dispatcher(bench.modules[DISPATCHER], max_buffered, workers)
            try:
                watch = Stopwatch()
                for index in range(bursts):
                    for _ in range(burst):
                        dispatcher.dispatch(task)
                    _drain(tally, (index + 1) * burst)
                watch.stop()
                executed = _executed(dispatcher)
            finally:
                dispatcher.quit()
        return Measured(watch, tally.n if executed == total else -1, total, executed=executed)

    return [
        ("Dispatcher.dispatch, no subscriber", "greenworks", lambda: dispatching([])),
        ("Dispatcher.dispatch, one no-op subscriber", "baseline", lambda: dispatching([Counter()])),
    ]


def _switch_variants(bench, switches):
    monitor = bench.modules[MONITOR]

    def ping_pong(watched):
        count = [0]

        def bounce():
            for _ in range(switches // 2):
                count[0] += 1
                gevent.sleep(0)

        watch_hub = monitor.watch_hub(60.0) if watched else None
        try:
            with Subscribers():
                greenlets = [gevent.spawn(bounce), gevent.spawn(bounce)]
                watch = Stopwatch()
                gevent.joinall(greenlets)
                watch.stop()
        finally:
            if watch_hub is not None:
                watch_hub.stop()
        return Measured(watch, count[0], 2 * (switches // 2))

    return [
        ("switches with watch_hub on", "greenworks", lambda: ping_pong(True)),
        ("switches, no watch", "baseline", lambda: ping_pong(False)),
    ]


@scenario(
    "events",
    "event emission (none / one no-op subscriber), trivial dispatch with a subscriber, hub watch switch cost",
    requires=(COMPONENT, "greenworks.events", DISPATCHER, MONITOR),
    sizes={
        "full": {"emits": 200000, "bursts": 100, "burst": 1000, "workers": 100, "switches": 200000},
        "quick": {"emits": 20000, "bursts": 10, "burst": 1000, "workers": 100, "switches": 20000},
        "tiny": {"emits": 500, "bursts": 3, "burst": 50, "workers": 5, "switches": 500},
    },
    repeat={"full": 5},
)
def events(bench):
    """Cost per event with no and with one no-op subscriber; what a subscriber does to trivial dispatch.

    With no subscriber ``Lifecycle.emit`` builds nothing (one list check);
    with one it builds the event, reads the clock and calls the subscriber.
    The dispatch group runs the ``trivial`` bursts with and without a
    subscriber installed: the Dispatcher has no per-task event, so the two
    must match. The switch group prices the hub watch's switch hook.
    """
    p = bench.params
    if not bench.available:
        bench.note("greenworks modules missing: %s" % "; ".join(bench.missing))
        return
    emit = bench.interleave(_emit_variants(bench, p["emits"]), label="emit", per=p["emits"])
    # Per-event costs over the bare loop, on CPU time: steadier than wall time on a shared machine.
    cpu = bench.cpu("emit") or emit
    bare = cpu["bare loop"]
    idle = (cpu["Lifecycle.emit, no subscriber"] - bare) / p["emits"]
    one = (cpu["Lifecycle.emit, one no-op subscriber"] - bare) / p["emits"]
    bench.target("emit with no subscriber, per event (cpu)", idle, "<=", 250e-9, unit="s")
    bench.note("one no-op subscriber: %.0f ns per event (cpu), the event built and handed over" % (one * 1e9))
    bench.result["per_event_ns"] = {"no_subscriber": idle * 1e9, "one_subscriber": one * 1e9}

    total = p["bursts"] * p["burst"]
    dispatch = bench.interleave(
        _dispatch_variants(bench, p["bursts"], p["burst"], p["workers"], p["burst"]),
        label="dispatch",
        per=total,
    )
    none, with_one = (
        dispatch["Dispatcher.dispatch, no subscriber"],
        dispatch["Dispatcher.dispatch, one no-op subscriber"],
    )
    bench.target("trivial dispatch: one subscriber vs none", with_one / none, "<=", 1.10)

    switch = bench.interleave(_switch_variants(bench, p["switches"]), label="switch", per=p["switches"])
    cpu = bench.cpu("switch") or switch
    hook = (cpu["switches with watch_hub on"] - cpu["switches, no watch"]) / p["switches"]
    bench.note(
        "watch_hub switch hook: %.0f ns per gevent.sleep(0) round trip (cpu, two switches)" % (hook * 1e9)
    )
    bench.result["watch_hub_ns_per_sleep0"] = hook * 1e9
