"""
Helpers for testing code that uses greenworks, greenworks' own tests included.

:class:`FakeClock` is a drop-in `IClock` whose time only moves when a test
says so::

    clock = FakeClock()
    runner = JobRunner(tick=60, clock=clock)
    clock.advance(60)          # the tick fires, its jobs run, then advance returns

``advance`` wakes every sleeper whose deadline has passed, one at a time in
deadline order (ties in the order they went to sleep), and after each one lets
the woken greenlets run until they block again. Time seen by a woken greenlet
is its own deadline, not the end of the advance, exactly as if the clock had
ticked through.
"""

import datetime
import heapq
import itertools
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event
from zope.interface import implementer

from greenworks import _checks
from greenworks._checks import is_real
from greenworks.clock import _check_deadline
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IClock, ITimerHandle

__all__ = ["FakeClock", "settle"]

#: Where a FakeClock starts unless told otherwise: a fixed instant, so runs repeat.
DEFAULT_START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)

_MAX_SETTLE_ROUNDS = 10000


def settle() -> None:
    """Let every runnable greenlet run until the event loop has nothing ready.

    Real timers and I/O that are not ready yet are not waited for.
    """
    loop = gevent.get_hub().loop
    for _ in range(_MAX_SETTLE_ROUNDS):
        gevent.idle()
        if not len(getattr(loop, "_callbacks", ())):
            return


@implementer(ITimerHandle)
class _Entry:
    """Default implementation of `ITimerHandle` for a FakeClock sleeper."""

    __slots__ = ("args", "callback", "clock", "deadline", "seq")

    def __init__(
        self,
        deadline: float,
        seq: int,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        clock: "FakeClock",
    ) -> None:
        self.deadline = deadline
        self.seq = seq
        self.callback: Callable[..., object] | None = callback
        self.args: tuple[Any, ...] | None = args
        self.clock = clock

    def __lt__(self, other: "_Entry") -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)

    @property
    def active(self) -> bool:
        return self.callback is not None

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = self.args = None
            self.clock._pending -= 1


@implementer(IClock)
class FakeClock:
    """An `IClock` whose time moves only through :meth:`advance`.

    :param start: the wall-clock time at creation: an aware ``datetime``
        (a naive one is taken as UTC), a POSIX timestamp, or ``None`` for
        2026-01-01 00:00 UTC.
    :param tz: the zone :meth:`now` uses when called without one
        (default UTC, so tests do not depend on the machine's zone).
    :param float monotonic: the starting value of :meth:`monotonic`; not 0
        by default, so code that confuses "zero" with "unset" is caught.
    """

    def __init__(
        self,
        start: datetime.datetime | float | None = None,
        tz: datetime.tzinfo = datetime.timezone.utc,
        monotonic: float = 1000.0,
    ) -> None:
        if start is None:
            start = DEFAULT_START
        if isinstance(start, datetime.datetime):
            if start.tzinfo is None:
                start = start.replace(tzinfo=datetime.timezone.utc)
            start = start.timestamp()
        elif not is_real(start):
            raise invalid_argument("start", start, "a datetime, a POSIX timestamp or None")
        self._wall0 = float(start)
        self._mono0 = self._mono = float(monotonic)
        self._tz = tz
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._pending = 0
        self._registered = Event()

    # -- IClock --------------------------------------------------------------

    def now(self, tz: datetime.tzinfo | None = None) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.time(), tz or self._tz)

    def time(self) -> float:
        return self._wall0 + (self._mono - self._mono0)

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        seconds = _checks.seconds("seconds", seconds, negative=True)
        if seconds <= 0:
            gevent.sleep(0)
            return
        woken = Event()
        entry = self.call_later(seconds, woken.set)
        try:
            woken.wait()
        finally:
            entry.cancel()

    def sleep_until(self, deadline: float) -> None:
        self.sleep(max(0.0, _check_deadline(deadline) - self._mono))

    def wait(self, event: Any, timeout: float | None = None) -> bool:
        timeout = _checks.seconds("timeout", timeout, none=True, negative=True)
        if event.is_set():
            return True
        if timeout is None:
            event.wait()
            return True
        if timeout <= 0:
            return False
        woken = Event()

        def wake(_source: object = None) -> None:
            woken.set()

        event.rawlink(wake)
        entry = self.call_later(timeout, wake)
        try:
            woken.wait()
        finally:
            entry.cancel()
            event.unlink(wake)
        return bool(event.is_set())

    def call_later(self, seconds: float, callback: Callable[..., object], *args: Any) -> _Entry:
        seconds = _checks.seconds("seconds", seconds, negative=True)
        if not callable(callback):
            raise invalid_argument("callback", callback, "a callable")
        entry = _Entry(self._mono + seconds, next(self._seq), callback, args, self)
        heapq.heappush(self._heap, entry)
        self._pending += 1
        self._registered.set()
        return entry

    # -- driving time --------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move time forward by *seconds*, waking sleepers in deadline order.

        May be called from any greenlet, including one that other sleepers
        depend on. Returns once every woken greenlet has run until it blocked.

        :raises InvalidArgument: if *seconds* is negative or not a number.
        """
        if not is_real(seconds) or not seconds >= 0:
            raise invalid_argument("seconds", seconds, "a number of seconds >= 0")
        target = self._mono + seconds
        settle()
        while True:
            entry = self._pop_due(target)
            if entry is None:
                break
            self._mono = max(self._mono, entry.deadline)
            callback, args = entry.callback, entry.args
            assert callback is not None and args is not None  # _pop_due skips cancelled entries
            entry.cancel()
            callback(*args)
            settle()
        self._mono = max(self._mono, target)
        settle()

    def stall(self, seconds: float) -> None:
        """Move time forward by *seconds* at once, as a hub blocked by CPU work would, then wake.

        Unlike :meth:`advance`, the sleepers whose deadlines passed meanwhile
        all wake *after* the jump, in deadline order, and each sees the late
        time: this is how tests play "the loop was blocked for five minutes"
        (missed ticks, misfires). Returns once the woken greenlets blocked again.

        :raises InvalidArgument: if *seconds* is negative or not a number.
        """
        if not is_real(seconds) or not seconds >= 0:
            raise invalid_argument("seconds", seconds, "a number of seconds >= 0")
        settle()
        self._mono += seconds
        self.advance(0)

    def advance_to_next(self) -> float:
        """Advance exactly to the earliest pending deadline; return the seconds moved (0 if none)."""
        deadline = self.next_deadline()
        if deadline is None:
            return 0.0
        step = max(0.0, deadline - self._mono)
        self.advance(step)
        return step

    def _pop_due(self, target: float) -> _Entry | None:
        heap = self._heap
        while heap:
            entry = heap[0]
            if entry.callback is None:
                heapq.heappop(heap)
                continue
            if entry.deadline > target:
                return None
            return heapq.heappop(heap)
        return None

    # -- inspecting ----------------------------------------------------------

    @property
    def sleepers(self) -> int:
        """How many sleeps, waits and timers are pending on this clock."""
        return self._pending

    def next_deadline(self) -> float | None:
        """The monotonic time of the earliest pending sleeper, or ``None``."""
        heap = self._heap
        while heap and heap[0].callback is None:
            heapq.heappop(heap)
        return heap[0].deadline if heap else None

    def wait_for_sleepers(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until at least *count* sleepers are pending on this clock.

        This is how a test knows a greenlet has reached its sleep without
        sleeping itself. *timeout* is real seconds, a guard against a hang.

        :return bool: True once there are enough sleepers, False on timeout.
        """
        with gevent.Timeout(timeout, False):
            while True:
                settle()
                if self._pending >= count:
                    return True
                self._registered.clear()
                self._registered.wait()
        return self._pending >= count

    def __repr__(self) -> str:
        return "<greenworks.testing.FakeClock now=%s monotonic=%.3f sleepers=%d>" % (
            self.now().isoformat(),
            self._mono,
            self._pending,
        )
