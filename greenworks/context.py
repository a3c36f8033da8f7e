"""
Cancellation and deadlines for greenlets, modelled on Go's ``context.Context``.

A :class:`Context` is a cancel signal that flows *down* a tree: cancelling a
context cancels every context derived from it, at once, while cancelling a
child never touches its parent. A context may also carry a deadline, after
which it cancels itself with :class:`~greenworks.exceptions.DeadlineExceeded`.

Usage::

    ctx = with_timeout(background(), 5.0)
    while not ctx.done.is_set():
        poll_once()
        if not ctx.sleep(1.0):      # False: cancelled while sleeping
            break

The contract, which every worker in greenworks relies on:

- ``ctx.done`` is a :class:`gevent.event.Event`: ``wait(timeout=None)``,
  ``is_set()`` and ``rawlink(callback)`` all work on it.
- ``ctx.err`` is ``None`` while the context is live, afterwards the same
  :class:`Canceled` or :class:`DeadlineExceeded` instance every time.
- A child's ``err`` is its parent's when the parent ends first.
- An idle context holds no greenlet: a deadline is a timer in the event loop
  (or an entry in a :class:`~greenworks.testing.FakeClock`).
- ``cancel()`` is idempotent and costs O(descendants).

A context can also be used as a context manager; leaving the block cancels
it, which is how a derived context is released once its work is done.
"""

import math
from typing import Literal, NoReturn

from gevent.event import Event
from zope.interface import implementer

from greenworks import _checks
from greenworks._checks import is_real
from greenworks.clock import ClockLike, TimerHandleLike, get_clock
from greenworks.exceptions import Canceled, ContextError, DeadlineExceeded, invalid_argument
from greenworks.interfaces import IContext

__all__ = ["Context", "background", "with_cancel", "with_deadline", "with_timeout"]


@implementer(IContext)
class Context:
    """Default implementation of `IContext`.

    Do not construct directly; derive one with :func:`with_cancel`,
    :func:`with_timeout` or :func:`with_deadline`.
    """

    __slots__ = ("__weakref__", "_children", "_clock", "_deadline", "_done", "_err", "_parent", "_timer")

    def __init__(self, parent: "Context | None", clock: ClockLike, deadline: float | None = None) -> None:
        self._parent = parent
        # Child -> None: a dict used as an ordered set. A parent with many
        # children (a Runner's root has one per worker) pays about half the
        # bytes per child that a set would, and cancels them in creation order.
        self._children: dict[Context, None] | None = None
        # Created on first use of ``done`` (or a wait): a context nobody waits
        # on, e.g. a worker that polls ``ctx.err``, costs no Event (144 bytes).
        self._done: Event | None = None
        self._err: ContextError | None = None
        self._deadline = deadline
        self._timer: TimerHandleLike | None = None
        self._clock = clock

    # -- reading -------------------------------------------------------------

    @property
    def done(self) -> Event:
        done = self._done
        if done is None:
            done = self._done = Event()
            if self._err is not None:
                done.set()
        return done

    @property
    def err(self) -> ContextError | None:
        return self._err

    @property
    def deadline(self) -> float | None:
        return self._deadline

    @property
    def clock(self) -> ClockLike:
        return self._clock

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` without one."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock.monotonic())

    def is_done(self) -> bool:
        return self._err is not None

    # -- waiting -------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        return self._clock.wait(self.done, _checks.seconds("timeout", timeout, none=True, negative=True))

    def sleep(self, seconds: float) -> bool:
        seconds = _checks.seconds("seconds", seconds, negative=True)
        if self._err is not None:
            return False
        if seconds <= 0:
            return True
        return not self._clock.wait(self.done, seconds)

    def raise_if_done(self) -> None:
        err = self._err
        if err is not None:
            # A fresh instance each time, so tracebacks do not pile up on the
            # shared one that ``err`` returns.
            raise type(err)(*err.args)

    # -- cancelling ----------------------------------------------------------

    def cancel(self) -> None:
        self._finish(Canceled())

    def _expire(self) -> None:
        self._finish(DeadlineExceeded())

    def _finish(self, err: ContextError) -> None:
        if self._err is not None:
            return
        parent = self._parent
        if parent is not None and parent._children is not None:
            parent._children.pop(self, None)
        # Iterative, so a deep chain of derived contexts cannot overflow the stack.
        stack = [self]
        while stack:
            ctx = stack.pop()
            if ctx._err is not None:
                continue
            ctx._err = err
            if ctx._timer is not None:
                ctx._timer.cancel()
                ctx._timer = None
            children, ctx._children = ctx._children, None
            if children:
                stack.extend(children)
            if ctx._done is not None:
                ctx._done.set()

    def _adopt(self, child: "Context") -> None:
        if self._err is not None:
            child._finish(self._err)
            return
        if self._children is None:
            self._children = {}
        self._children[child] = None

    # -- context manager -----------------------------------------------------

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc_info: object) -> Literal[False]:
        self.cancel()
        return False

    def __repr__(self) -> str:
        state = "live" if self._err is None else type(self._err).__name__
        remaining = self.remaining()
        deadline = "" if remaining is None else " remaining=%.3fs" % remaining
        return "<greenworks.Context %s%s at 0x%x>" % (state, deadline, id(self))


@implementer(IContext)
class _Background(Context):
    """The root of every context tree: never cancelled, no deadline."""

    __slots__ = ()

    def cancel(self) -> NoReturn:
        raise TypeError("the background context cannot be cancelled; derive one with with_cancel()")

    def _adopt(self, child: Context) -> None:
        # Background is never cancelled, so it need not remember its children
        # (and a long-lived process creating many of them would leak otherwise).
        pass

    def __repr__(self) -> str:
        return "<greenworks.Context background>"


_background = _Background(None, get_clock())


def background() -> Context:
    """Return the root context: never cancelled, no deadline, real clock."""
    return _background


def _derive(parent: Context | None, clock: ClockLike | None, deadline: float | None) -> Context:
    if parent is None:
        parent = _background
    elif not IContext.providedBy(parent):
        raise invalid_argument("parent", parent, "a Context or None")
    clock = parent.clock if clock is None else get_clock(clock)
    if parent.deadline is not None and (deadline is None or parent.deadline < deadline):
        # The parent ends first; its cancellation reaches the child anyway.
        deadline = parent.deadline
        own_timer = False
    else:
        own_timer = deadline is not None
    child = Context(parent, clock, deadline)
    parent._adopt(child)
    if own_timer and child._err is None:
        assert deadline is not None  # own_timer says so
        delay = deadline - clock.monotonic()
        if delay <= 0:
            child._expire()
        else:
            child._timer = clock.call_later(delay, child._expire)
    return child


def with_cancel(parent: Context | None = None, clock: ClockLike | None = None) -> Context:
    """Return a child of *parent* that can be cancelled on its own.

    :param parent: a context, or ``None`` for :func:`background`.
    :param clock: the clock for the child's waits; defaults to the parent's.
    """
    return _derive(parent, clock, None)


def with_timeout(parent: Context | None, seconds: float, clock: ClockLike | None = None) -> Context:
    """Return a child of *parent* that is cancelled after *seconds*.

    The deadline is measured on *clock* (default: the parent's), so a
    :class:`~greenworks.testing.FakeClock` controls it entirely.

    :param float seconds: time from now; ``<= 0`` gives a context that is
        already done with :class:`DeadlineExceeded`.
    :raises InvalidArgument: if *seconds* is not a real number.
    """
    if parent is not None and not IContext.providedBy(parent):
        raise invalid_argument("parent", parent, "a Context or None")
    if not is_real(seconds) or seconds != seconds or seconds in (math.inf, -math.inf):
        raise invalid_argument(
            "seconds", seconds, "a finite number of seconds (<= 0: already expired; no limit: with_cancel)"
        )
    resolved = (
        (parent.clock if parent is not None else _background.clock) if clock is None else get_clock(clock)
    )
    return _derive(parent, resolved, resolved.monotonic() + seconds)


def with_deadline(parent: Context | None, deadline: float, clock: ClockLike | None = None) -> Context:
    """Return a child of *parent* cancelled when ``clock.monotonic()`` reaches *deadline*."""
    if not is_real(deadline) or deadline != deadline or deadline in (math.inf, -math.inf):
        raise invalid_argument("deadline", deadline, "a finite monotonic time in seconds")
    return _derive(parent, clock, float(deadline))
