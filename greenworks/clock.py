"""
The only code in greenworks that reads time or sleeps.

Every component takes ``clock=None`` and resolves it with :func:`get_clock`;
tests pass a :class:`greenworks.testing.FakeClock` instead and move time with
``advance()``, so no test ever waits for a real minute.

Two kinds of time are kept apart, as in the standard library:

- :meth:`Clock.monotonic` measures intervals and deadlines. Components keep
  their deadlines on this scale, so a wall-clock jump never fires or starves
  a timer.
- :meth:`Clock.time` and :meth:`Clock.now` tell the wall-clock time, for
  schedules that must fall on boundaries people read ("second 0 of every
  minute").
"""

import datetime
import time
from collections.abc import Callable
from typing import Any, Protocol

import gevent
from gevent import get_hub
from gevent.hub import Waiter
from zope.interface import implementer

from greenworks import _checks
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IClock, ITimerHandle

__all__ = ["Clock", "ClockLike", "TimerHandleLike", "default_clock", "get_clock", "local_timezone"]


class TimerHandleLike(Protocol):
    """The static type of an `ITimerHandle` (what :meth:`ClockLike.call_later` returns)."""

    @property
    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class ClockLike(Protocol):
    """The static type of an `IClock`: :class:`Clock`, :class:`~greenworks.testing.FakeClock` or yours.

    zope.interface declarations are invisible to type checkers; this protocol
    spells the same contract for them. `IClock` stays the spec of record.
    """

    def now(self, tz: datetime.tzinfo | None = None) -> datetime.datetime: ...

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def sleep_until(self, deadline: float) -> None: ...

    def wait(self, event: Any, timeout: float | None = None) -> bool: ...

    def call_later(self, seconds: float, callback: Callable[..., object], *args: Any) -> TimerHandleLike: ...


def local_timezone() -> datetime.tzinfo | None:
    """Return this machine's local time zone as a fixed-offset ``tzinfo``."""
    return datetime.datetime.now().astimezone().tzinfo


@implementer(ITimerHandle)
class _LoopTimer:
    """Default implementation of `ITimerHandle` over a gevent loop timer."""

    __slots__ = ("_timer",)

    def __init__(self, timer: Any) -> None:
        self._timer = timer

    @property
    def active(self) -> bool:
        return self._timer is not None and bool(self._timer.active)

    def cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()


@implementer(IClock)
class Clock:
    """Default implementation of `IClock`: the machine's clocks and the gevent hub.

    A deadline set with :meth:`call_later` is a timer in the event loop, not a
    greenlet, so a context waiting for its deadline costs no stack.
    """

    def now(self, tz: datetime.tzinfo | None = None) -> datetime.datetime:
        if tz is None:
            return datetime.datetime.now().astimezone()
        return datetime.datetime.now(tz)

    # The builtins themselves, not methods calling them: hot paths (a
    # JobRunner reads the time twice per job) save a Python frame per read.
    # (monotonic first: once ``time`` is bound in the class body it shadows the module.)
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def sleep(self, seconds: float) -> None:
        gevent.sleep(_checks.seconds("seconds", seconds, negative=True))

    def sleep_until(self, deadline: float) -> None:
        deadline = _check_deadline(deadline)
        # A loop timer may fire a little early (its idea of "now" is cached
        # per loop iteration); sleep again for whatever is left.
        remaining = deadline - time.monotonic()
        while remaining > 0:
            gevent.sleep(remaining)
            remaining = deadline - time.monotonic()

    def wait(self, event: Any, timeout: float | None = None) -> bool:
        """See `IClock.wait`. Blocks (switches to the hub) unless *event* is set or *timeout* <= 0.

        A gevent Event is waited for with a loop timer and a ``Waiter``: the
        timer's expiry switches straight back, where ``event.wait(timeout)``
        throws a ``Timeout`` into the waiting greenlet and catches it, which
        costs a JobRunner's tick start about 0.1-0.2 ms of cold-cache time
        (benchmarks/bench_jobs.py).
        """
        timeout = _checks.seconds("timeout", timeout, none=True, negative=True)
        if event.is_set() or (timeout is not None and timeout <= 0):
            return bool(event.is_set())
        rawlink = getattr(event, "rawlink", None)
        if rawlink is None:  # not a gevent Event: its own wait
            event.wait(timeout)
            return bool(event.is_set())
        waiter = Waiter()
        switch = waiter.switch
        timer = None
        rawlink(switch)
        try:
            if timeout is not None:
                timer = get_hub().loop.timer(timeout)
                timer.start(switch, None)
            waiter.get()
        finally:
            if timer is not None:
                timer.close()
            event.unlink(switch)
        return bool(event.is_set())

    def call_later(self, seconds: float, callback: Callable[..., object], *args: Any) -> "_LoopTimer":
        seconds = _checks.seconds("seconds", seconds, negative=True)
        if not callable(callback):
            raise invalid_argument("callback", callback, "a callable")
        timer = get_hub().loop.timer(seconds)
        handle = _LoopTimer(timer)

        def fire() -> None:
            handle.cancel()
            callback(*args)

        timer.start(fire)
        return handle

    def __repr__(self) -> str:
        return "<greenworks.Clock (real time)>"


def _check_deadline(deadline: object) -> float:
    """A monotonic deadline: a finite real number (never NaN, a bool, or infinity)."""
    if not _checks.is_real(deadline) or deadline != deadline or deadline in (float("inf"), float("-inf")):
        raise invalid_argument("deadline", deadline, "a finite monotonic time in seconds")
    return deadline


#: The process-wide real clock used wherever ``clock=None`` is passed.
default_clock = Clock()


def get_clock(clock: ClockLike | None = None) -> ClockLike:
    """Return *clock*, or the process-wide real :class:`Clock` when it is ``None``.

    :raises InvalidArgument: if *clock* does not provide `IClock`.
    """
    if clock is None:
        return default_clock
    if not IClock.providedBy(clock):
        raise invalid_argument("clock", clock, "an IClock (greenworks.Clock or FakeClock)")
    return clock
