"""
Which greenlet blocked the hub: detection and attribution.

A gevent application stalls when one greenlet runs without yielding (CPU
work, an unpatched blocking call): every other greenlet, every socket and
every timer waits. :func:`watch_hub` turns on a watch that notices it and
names the culprit::

    from greenworks.monitor import watch_hub

    with watch_hub(max_blocking_time=0.1) as watch:
        serve()
        print(watch.top_blockers(5))

For each block longer than *max_blocking_time* it emits
`greenworks.events.HubBlocked` with the greenlet's name (a JobRunner worker is
``greenworks.jobs[<job id>]`` while it runs a job), its component's name, the
task or job id when the name carries one, and the greenlet's stack as it was
while it blocked; it counts blocks per component and keeps the worst
culprits for the status page (:meth:`HubWatch.snapshot`).

How it works, and why not gevent's own monitor thread:

- gevent's monitor (``GEVENT_MONITOR_THREAD_ENABLE``) records the greenlet
  last switched to and *can* tell which one blocked, but it is configured
  process-wide through gevent's config before the hub starts, prints its own
  report to stderr, and publishes `gevent.events.EventLoopBlocked` from its
  own thread, where zope.event subscribers (ours and the user's, which are
  not thread-safe) would run. So greenworks keeps its own, small equivalent.
- In the hub's thread, a ``greenlet.settrace`` hook counts switches and
  remembers the greenlet switched to (one Python call per switch, chained
  to any previous hook; its cost is in ``benchmarks/bench_events.py``).
- A native thread (``_thread`` as it was before monkey-patching) looks every
  ``max_blocking_time / 4`` seconds. When the switch count has not moved for
  *max_blocking_time* and the greenlet switched to is not the hub (the hub
  waiting for I/O or timers is idle, not blocked), the loop is blocked: it
  captures that greenlet, its name and the stack of the hub's thread
  (``sys._current_frames()``). When the count moves again it hands the report
  to the hub through a thread-safe async watcher; a greenlet of the watch
  then emits the event, counts and ranks it. Nothing but that hand-off
  crosses threads, and the watcher thread never logs (the logging locks are
  monkey-patched).
- Durations are measured from the watcher's looks (a change is dated half
  way between the two looks around it), so they are right to about
  ``max_blocking_time / 4``.

A block that is still going on is only reported once it ended; a greenlet
that blocks forever is not reported (nor is anything else: the hub is
stuck). Blocking code that runs in the hub itself (a watcher callback) is not
attributed. A watch is per process and per thread: start it after forking
(in gunicorn's ``post_worker_init``), from the thread whose hub it watches.
"""

from __future__ import annotations

import collections
import datetime
import re
import sys
import traceback
from typing import Any

import gevent
import greenlet as _greenlet_mod
from gevent import monkey
from gevent.event import Event
from greenlet import getcurrent
from zope.interface import implementer

from greenworks import _checks, _component, _greenlets
from greenworks.clock import ClockLike
from greenworks.events import HubBlocked, notify, subscribed
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IHubWatch

__all__ = ["HubWatch", "current", "watch_hub"]

_UTC = datetime.timezone.utc
_start_new_thread = monkey.get_original("_thread", "start_new_thread")
_allocate_lock = monkey.get_original("_thread", "allocate_lock")
_get_ident = monkey.get_original("_thread", "get_ident")
_perf_counter = monkey.get_original("time", "perf_counter")

#: Culprits kept for :meth:`HubWatch.top_blockers`; the least blocking go first.
MAX_BLOCKERS = 100
#: Frames kept of a culprit's stack (the innermost ones).
STACK_LIMIT = 30
#: Seconds ``stop()`` waits for the watcher thread to end (it ends within a look).
THREAD_JOIN = 5.0

# "greenworks.<component>[<inside>]": the shape of every greenlet name greenworks gives.
_NAME = re.compile(r"^greenworks\.([^\[\]]+)\[(.*)\]$")
# JobRunner idle workers and batch greenlets: "<runner>:worker 3", "<runner>:batch 7".
_JOBS_IDLE = re.compile(r"^.*:(worker|batch) \d+$")

_current: HubWatch | None = None


def current() -> HubWatch | None:
    """Return the running watch of this process, or None."""
    watch = _current
    return watch if watch is not None and watch.running else None


def watch_hub(
    max_blocking_time: float = 0.1, *, clock: ClockLike | None = None, logger: Any = None, name: str = "hub"
) -> HubWatch:
    """Start (or return the running) hub watch of this process.

    Idempotent: while a watch runs, calling this again returns it (asking
    for another *max_blocking_time* then is refused rather than silently
    ignored). Call it from the thread whose hub is to be watched (the main
    thread, normally). Never blocks.

    :param float max_blocking_time: seconds (> 0) without a greenlet switch
        that count as a blocked loop.
    :param clock: the `IClock` whose wall time is the events' ``at``.
    :param logger: a ``logging.Logger`` or None (``greenworks.monitor``).
    :param str name: the watch's name (its snapshot card).
    :return HubWatch: the running watch; ``stop()`` it, or use it as a context manager.
    :raises InvalidArgument: *max_blocking_time* is not a number > 0, or
        differs from that of the watch already running.
    """
    max_blocking_time = _checks.seconds("max_blocking_time", max_blocking_time, positive=True)
    running = current()
    if running is not None:
        if running.max_blocking_time != max_blocking_time:
            raise invalid_argument(
                "max_blocking_time",
                max_blocking_time,
                "%r, that of the watch already running (stop() it first)" % running.max_blocking_time,
            )
        return running
    return HubWatch(max_blocking_time, clock=clock, logger=logger, name=name).start()


class _Switches:
    """What the switch hook writes in the hub's thread and the watcher thread reads."""

    __slots__ = ("count", "target")

    def __init__(self) -> None:
        self.count = 0
        self.target: Any = None


class _Report:
    """One block, as the watcher thread saw it."""

    __slots__ = ("greenlet", "greenlet_name", "seconds", "stack")

    def __init__(self, greenlet: Any, greenlet_name: str, stack: str) -> None:
        self.greenlet = greenlet
        self.greenlet_name = greenlet_name
        self.stack = stack
        self.seconds = 0.0


def _greenlet_name(greenlet: Any) -> str:
    name = getattr(greenlet, "name", None)
    return name if isinstance(name, str) and name else repr(greenlet)


def attribute(greenlet: Any, greenlet_name: str) -> tuple[Any, str | None, str | None, bool]:
    """Return ``(component, component_name, task_or_job, foreign)`` for a greenlet that blocked.

    The component comes from the Lifecycle that spawned the greenlet; a
    greenworks greenlet spawned without one is named after the component by
    its name (``greenworks.<component>[...]``). The task or job id is read
    from the name: a JobRunner worker is ``greenworks.jobs[<job id>]`` while
    it runs a job, a Runner worker ``greenworks.<runner>[<task>]``; the
    numbers in Dispatcher and TaskManager names are worker numbers, not tasks.
    """
    life = _component.owner_of(greenlet)
    match = _NAME.match(greenlet_name)
    inside = match.group(2) if match else None
    if life is not None:
        kind, component_name, component = life.kind, life.name, life.owner
    elif match is not None and _greenlets.spawned_here(greenlet):
        kind, component_name, component = match.group(1), match.group(1), None
    else:
        return None, None, None, True
    task = None
    if inside is not None:
        if kind == "jobs" or (match is not None and match.group(1) == "jobs"):
            task = None if _JOBS_IDLE.match(inside) else inside
        elif kind not in ("dispatcher", "taskmanager") and not inside.isdigit():
            task = inside
    return component, component_name, task, False


@implementer(IHubWatch)
class HubWatch:
    """Default implementation of `IHubWatch`; made by :func:`watch_hub`.

    :param float max_blocking_time: seconds (> 0) without a switch that count as blocked.
    :param clock: the `IClock` whose wall time is the events' ``at``.
    :param logger: a ``logging.Logger`` or None.
    :param str name: the watch's name.
    """

    def __init__(
        self,
        max_blocking_time: float = 0.1,
        *,
        clock: ClockLike | None = None,
        logger: Any = None,
        name: str = "hub",
    ) -> None:
        self.max_blocking_time: float = _checks.seconds("max_blocking_time", max_blocking_time, positive=True)
        self._life = _component.Lifecycle(self, "hubwatch", name, clock, logger, __name__)
        self._switches = _Switches()
        self._reports: collections.deque[_Report] = collections.deque()
        self._wake = Event()
        self._stop_lock: Any = None
        self._thread_done: Any = None
        self._async: Any = None
        self._hook: Any = None
        self._previous_hook: Any = None
        self._deliverer: Any = None
        self._hub_ident: int | None = None
        self._started: tuple[int, float] = (0, 0.0)
        self._counts: collections.Counter[str | None] = collections.Counter()
        self._seconds: collections.Counter[str | None] = collections.Counter()
        self._blockers: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._total = 0

    # -- IComponent --------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._life.name

    @property
    def state(self) -> _component.State:
        return self._life.state

    @property
    def running(self) -> bool:
        """Whether the watch is on."""
        return self._life.running

    def start(self) -> HubWatch:
        """Default implementation of `IComponent.start`: hook switches, start the watcher thread."""
        global _current
        if self._life.running:
            return self
        running = current()
        if running is not None and running is not self:
            raise invalid_argument("HubWatch", self, "one watch per process; %r is running" % running)
        hub = gevent.get_hub()
        self._hub_ident = _get_ident()
        switches = self._switches = _Switches()
        # The caller runs now; it may block before its next switch.
        switches.target = getcurrent()
        previous = _greenlet_mod.gettrace()

        # The hot path: runs on every greenlet switch of this thread.
        def hook(event: str, args: Any) -> None:
            switches.count += 1
            switches.target = args[1] if event == "switch" or event == "throw" else None
            if previous is not None:
                previous(event, args)

        self._previous_hook = previous
        self._hook = hook
        _greenlet_mod.settrace(hook)
        self._async = hub.loop.async_()
        self._async.ref = False  # the watch never keeps gevent.wait() from returning
        self._async.start(self._wake.set)
        self._stop_lock = _allocate_lock()
        self._stop_lock.acquire()
        self._thread_done = _allocate_lock()
        self._thread_done.acquire()
        self._wake.clear()
        self._life.started()
        self._deliverer = self._life.spawn("greenworks.monitor[%s]" % self.name, self._deliver)
        self._started = (switches.count, _perf_counter())
        looking = _allocate_lock()
        looking.acquire()
        _start_new_thread(
            self._watch, (hub, switches, self._stop_lock, self._thread_done, self._async, looking)
        )
        # Wait (natively, a moment) until the thread runs: once start() returns, blocks are seen.
        looking.acquire(True, THREAD_JOIN)
        _current = self
        self._life.logger.info("hub watch %r: reporting blocks over %ss", self.name, self.max_blocking_time)
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Default implementation of `IComponent.stop`: end the thread, unhook, report what is left.

        Blocks the hub only for the watcher thread's last look (it is woken
        at once). Reports of blocks that ended before ``stop()`` are still
        emitted, from the calling greenlet.
        """
        global _current
        if not self._life.running:
            self._life.wait_stopped(timeout)
            return True
        self._life.check_not_own("stop")
        self._life.state = _component.State.STOPPING
        self._stop_lock.release()
        ended = self._thread_done.acquire(True, THREAD_JOIN)
        if ended:
            self._thread_done.release()
        if _greenlet_mod.gettrace() is self._hook:
            _greenlet_mod.settrace(self._previous_hook)
        else:
            # Somebody hooked after us and chains to us: leaving ours keeps theirs working.
            self._life.logger.warning(
                "hub watch %r: another greenlet trace hook was set after ours; ours stays chained",
                self.name,
            )
        self._async.stop()
        self._async.close()
        self._wake.set()
        clean = self._life.finish([self._deliverer], timeout) and ended
        self._emit_reports()
        if _current is self:
            _current = None
        self._life.stopped(clean)
        self._life.logger.info("hub watch %r stopped", self.name)
        return clean

    def __enter__(self) -> HubWatch:
        return self.start()

    def __exit__(self, exc_type: Any, exc_value: Any, tb: Any) -> None:
        self.stop()

    # -- the watcher thread (native; touches nothing monkey-patched) -----------------

    def _watch(
        self, hub: Any, switches: _Switches, stop_lock: Any, done: Any, async_: Any, looking: Any
    ) -> None:
        limit = self.max_blocking_time
        look = limit / 4.0
        hub_ident = self._hub_ident
        assert hub_ident is not None  # start() set it before starting this thread
        reports = self._reports
        # As start() left them: a block that begins at once is dated from there.
        seen_count, since = self._started
        last = since
        report: _Report | None = None
        looking.release()
        try:
            while not stop_lock.acquire(True, look):
                count, target = switches.count, switches.target
                now = _perf_counter()
                if count != seen_count or target is None or target is hub:
                    # It changed between two looks: take the midpoint, right to half a look.
                    middle = (last + now) / 2.0
                    if report is not None:
                        report.seconds = middle - since
                        reports.append(report)
                        report = None
                        async_.send()
                    seen_count, since, last = count, middle, now
                    continue
                last = now
                if report is None and now - since >= limit:
                    frame = sys._current_frames().get(hub_ident)
                    stack = "".join(traceback.format_stack(frame, limit=STACK_LIMIT)) if frame else ""
                    # Re-read: a switch since the look above means the block ended.
                    if switches.count == count:
                        report = _Report(target, _greenlet_name(target), stack)
            if report is not None:
                # Woken by stop(), which runs in the hub's thread: that block is over.
                now = _perf_counter()
                report.seconds = (last + now) / 2.0 - since
                reports.append(report)
        except BaseException:  # a daemon thread must end quietly at interpreter exit
            pass
        finally:
            done.release()

    # -- in the hub's thread ---------------------------------------------------------

    def _deliver(self) -> None:
        while self._life.running:
            self._wake.wait()
            self._wake.clear()
            self._emit_reports()

    def _emit_reports(self) -> None:
        reports = self._reports
        while reports:
            self._record(reports.popleft())

    def _record(self, report: _Report) -> None:
        component, component_name, task, foreign = attribute(report.greenlet, report.greenlet_name)
        report.greenlet = None
        at = self._life.clock.now(_UTC)
        self._total += 1
        self._counts[component_name] += 1
        # typeshed's Counter counts ints only; this one sums float seconds.
        self._seconds[component_name] += report.seconds  # type: ignore[assignment]
        key = (component_name, report.greenlet_name, task)
        entry = self._blockers.get(key)
        if entry is None:
            if len(self._blockers) >= MAX_BLOCKERS:
                least = min(self._blockers, key=lambda k: self._blockers[k]["seconds"])
                del self._blockers[least]
            entry = self._blockers[key] = {
                "greenlet_name": report.greenlet_name,
                "component_name": component_name,
                "task_or_job": task,
                "foreign": foreign,
                "count": 0,
                "seconds": 0.0,
                "max_seconds": 0.0,
            }
        entry["count"] += 1
        entry["seconds"] += report.seconds
        entry["max_seconds"] = max(entry["max_seconds"], report.seconds)
        entry["last_at"] = at.isoformat()
        entry["last_stack"] = report.stack
        self._life.logger.warning(
            "hub blocked %.3fs by %s (component %s, task %s)",
            report.seconds,
            report.greenlet_name,
            component_name,
            task,
        )
        if subscribed():
            notify(
                HubBlocked(
                    component,
                    component_name,
                    at,
                    report.seconds,
                    report.greenlet_name,
                    component_name,
                    task,
                    report.stack,
                )
            )

    # -- reporting ---------------------------------------------------------------------

    def counts(self) -> dict[str | None, int]:
        """Default implementation of `IHubWatch.counts`."""
        return dict(self._counts)

    def top_blockers(self, n: int = 10) -> list[dict[str, Any]]:
        """Default implementation of `IHubWatch.top_blockers`."""
        n = _checks.count("n", n)
        ranked = sorted(self._blockers.values(), key=lambda e: e["seconds"], reverse=True)
        return [dict(entry) for entry in ranked[:n]]

    def snapshot(self) -> dict[str, Any]:
        """Default implementation of `IComponent.snapshot`: totals, per component, top blockers."""
        data = self._life.header()
        data["max_blocking_time"] = self.max_blocking_time
        data["blocks"] = self._total
        data["blocked_seconds"] = round(sum(self._seconds.values()), 6)
        data["by_component"] = {
            "(foreign)" if name is None else name: {
                "blocks": self._counts[name],
                "seconds": round(self._seconds[name], 6),
            }
            for name in self._counts
        }
        data["top_blockers"] = self.top_blockers(10)
        return data

    def __repr__(self) -> str:
        return "<greenworks.monitor.HubWatch %r %s max_blocking_time=%r>" % (
            self.name,
            self._life.state.value,
            self.max_blocking_time,
        )
