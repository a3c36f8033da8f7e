"""
task_group: structured concurrency for greenlets (trio's nursery, asyncio's TaskGroup).

::

    with task_group(timeout=10) as g:
        for url in urls:
            g.spawn(fetch, g.ctx, url)
    # here every child has ended; a failure is raised as an ExceptionGroup

The rules:

- ``g.spawn(fn, *args)`` calls ``fn(*args)`` in a child greenlet, nothing
  added: pass ``g.ctx`` yourself when the child should watch the group (it
  should). Children are named ``greenworks.task_group[<group>.<n>:<fn>]``.
- Leaving the ``with`` block waits for every child. No greenlet outlives
  its group, whatever happens.
- The group's context ``g.ctx`` is cancelled by the first real failure (of
  a child or of the body), by ``g.cancel()``, by *timeout*, or when the
  parent context ends. *grace* seconds later every child still running is
  killed with ``GreenletExit``.
- The exit raises an ``ExceptionGroup`` (``BaseExceptionGroup`` when a
  ``gevent.Timeout`` escaped a child) of every real error, in the order they
  happened. Not errors: a child's ``GreenletExit``, and ``Canceled`` /
  ``DeadlineExceeded`` raised once the group's context is done (the echo of
  the cancellation).
- Without errors: a group that ran out of *timeout* raises
  ``DeadlineExceeded`` (trio's ``fail_after``; catch it for ``move_on``); a
  group whose parent context ended raises a fresh copy of the parent's
  ``err``; a group ended with ``g.cancel()`` exits quietly.
- ``KeyboardInterrupt`` and ``SystemExit`` (of the body or a child), and a
  ``GreenletExit`` or ``gevent.Timeout`` thrown into the body, kill the
  children at once and propagate as they are, not grouped.
- ``g.start(fn, *args)`` calls ``fn(*args, task_status=status)`` and blocks
  until the child calls ``status.started(value)``; it returns *value*.
- The body is never interrupted; it can watch ``g.ctx``. (trio and asyncio
  cancel the body at its next checkpoint; in gevent every blocking call is
  one, and throwing into arbitrary code is what ``gevent.Timeout`` is for.)
- Nesting: ``task_group()`` without *ctx*, inside the body or a child of
  another group, derives its context from that group's, so cancelling the
  outer group reaches the inner one's children too.
"""

import itertools
import logging
import sys
import weakref
from collections.abc import Callable
from typing import Any

import gevent
from gevent import Greenlet, GreenletExit
from gevent.event import AsyncResult, Event
from greenlet import getcurrent
from zope.interface import implementer

from greenworks import _checks, _greenlets
from greenworks._component import KILL_GRACE
from greenworks.clock import ClockLike, get_clock
from greenworks.context import background, with_cancel, with_timeout
from greenworks.exceptions import ContextError, DeadlineExceeded, TaskGroupError, invalid_argument
from greenworks.interfaces import IContext, ITaskGroup, ITaskStatus

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover - the backport, on 3.10
    from exceptiongroup import BaseExceptionGroup

__all__ = ["DEFAULT_GRACE", "TaskGroup", "TaskStatus", "task_group"]

logger = logging.getLogger("greenworks.supervisor")

#: Seconds children get to end after the group is cancelled, before they are killed.
DEFAULT_GRACE = 1.0

#: What kills the children at once and propagates ungrouped.
_INTERRUPTS = (KeyboardInterrupt, SystemExit, GreenletExit, gevent.Timeout)

_serial = itertools.count(1)
#: greenlet -> contexts of the groups it runs in (body or child), innermost last.
_scopes: "weakref.WeakKeyDictionary[Any, list[Any]]" = weakref.WeakKeyDictionary()


def _innermost() -> Any:
    stack = _scopes.get(getcurrent())
    return stack[-1] if stack else None


@implementer(ITaskStatus)
class TaskStatus:
    """Default implementation of `ITaskStatus`."""

    __slots__ = ("_called", "_result")

    def __init__(self) -> None:
        self._called = False
        self._result: AsyncResult = AsyncResult()

    def started(self, value: Any = None) -> None:
        if self._called:
            raise TaskGroupError("task_status.started() called twice")
        self._called = True
        if not self._result.ready():
            self._result.set(value)

    def _fail(self, exc: BaseException) -> None:
        if not self._result.ready():
            self._result.set_exception(exc)


@implementer(ITaskGroup)
class TaskGroup:
    """Default implementation of `ITaskGroup`; build it with :func:`task_group`."""

    def __init__(
        self,
        ctx: Any = None,
        timeout: Any = None,
        *,
        grace: Any = DEFAULT_GRACE,
        clock: ClockLike | None = None,
    ) -> None:
        if ctx is not None and not IContext.providedBy(ctx):
            raise invalid_argument("ctx", ctx, "a Context or None")
        self._parent_arg = ctx
        self._timeout = _checks.seconds("timeout", timeout, none=True)
        self._grace = _checks.seconds("grace", grace)
        self._clock_arg = None if clock is None else get_clock(clock)
        self._id = next(_serial)
        self._count = 0
        self._children: set[Greenlet] = set()
        self._all_done = Event()
        self._all_done.set()
        self._errors: list[BaseException] = []
        self._fatal: BaseException | None = None
        self._user_cancel = False
        self._killing = False
        self._killer: Any = None
        self._stubborn_logged = False
        self._state = "new"
        self._ctx: Any = None
        self._parent: Any = None
        self._body: Any = None

    # -- reading ---------------------------------------------------------------

    @property
    def ctx(self) -> Any:
        if self._ctx is None:
            raise TaskGroupError("the task group's context exists once the with block is entered")
        return self._ctx

    @property
    def cancelled(self) -> bool:
        return self._ctx is not None and self._ctx.err is not None

    # -- entering --------------------------------------------------------------

    def __enter__(self) -> "TaskGroup":
        if self._state != "new":
            raise TaskGroupError("a task group can be entered only once")
        parent = self._parent_arg or _innermost() or background()
        self._parent = parent
        if self._timeout is None:
            self._ctx = with_cancel(parent, self._clock_arg)
        else:
            self._ctx = with_timeout(parent, self._timeout, self._clock_arg)
        self._clock = self._ctx.clock
        self._ctx.done.rawlink(self._on_done)
        self._body = getcurrent()
        _scopes.setdefault(self._body, []).append(self._ctx)
        self._state = "open"
        return self

    # -- spawning --------------------------------------------------------------

    def spawn(self, fn: Callable[..., Any], *args: Any, name: str | None = None) -> Greenlet:
        """See `ITaskGroup.spawn`."""
        return self._spawn(fn, args, name, None)

    def start(self, fn: Callable[..., Any], *args: Any, name: str | None = None) -> Any:
        """See `ITaskGroup.start`. Blocks."""
        status = TaskStatus()
        self._spawn(fn, args, name, status)
        ctx = self._ctx

        def group_done(_event: Any) -> None:
            err = ctx.err
            status._fail(type(err)(*err.args))

        ctx.done.rawlink(group_done)
        try:
            return status._result.get()
        finally:
            ctx.done.unlink(group_done)

    def _spawn(self, fn: Any, args: tuple[Any, ...], name: str | None, status: TaskStatus | None) -> Greenlet:
        if self._state != "open":
            raise TaskGroupError("task group %d is %s: it takes no more children" % (self._id, self._state))
        if not callable(fn):
            raise invalid_argument("fn", fn, "a callable")
        if name is not None:
            _checks.name("name", name)
        self._count += 1
        label = name or getattr(fn, "__name__", None) or type(fn).__name__
        greenlet = _greenlets.spawn(
            "greenworks.task_group[%d.%d:%s]" % (self._id, self._count, label),
            self._run_child,
            fn,
            args,
            status,
        )
        # start() only scheduled it: registering now cannot miss its end.
        self._children.add(greenlet)
        self._all_done.clear()
        _scopes[greenlet] = [self._ctx]
        greenlet.rawlink(lambda dead: self._child_ended(dead, status))
        if self._killing:
            # Spawned into a group already killing: it gets the same grace.
            self._clock.call_later(self._grace, greenlet.kill, GreenletExit, False)
        return greenlet

    def _run_child(self, fn: Any, args: tuple[Any, ...], status: TaskStatus | None) -> None:
        try:
            if status is None:
                fn(*args)
            else:
                fn(*args, task_status=status)
        except GreenletExit:
            pass
        except BaseException as exc:
            if status is not None and not status._called:
                status._fail(exc)  # start() raises it; the group does not count it
            else:
                self._failed(exc, "child")

    def _child_ended(self, greenlet: Greenlet, status: TaskStatus | None) -> None:
        if status is not None and not status._called:
            status._fail(TaskGroupError("%s ended without calling task_status.started()" % greenlet.name))
        self._children.discard(greenlet)
        if not self._children:
            self._all_done.set()

    # -- cancelling ------------------------------------------------------------

    def cancel(self) -> None:
        """See `ITaskGroup.cancel`."""
        if self._ctx is None:
            raise TaskGroupError("cancel() before the with block was entered")
        if self._ctx.err is None:
            self._user_cancel = True
            self._ctx.cancel()

    def _failed(self, exc: BaseException, where: str) -> None:
        """Record a failure of a child or of the body; the first one cancels the group."""
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            if self._fatal is None:
                self._fatal = exc
            self._ctx.cancel()
            self._kill_now(block=False)
            return
        if isinstance(exc, ContextError) and self._ctx.err is not None:
            return  # the echo of the group's own cancellation
        logger.debug("task group %d: %s failed: %r", self._id, where, exc)
        self._errors.append(exc)
        self._ctx.cancel()

    def _on_done(self, _event: Any) -> None:
        # In the hub: the context just ended, for whatever reason.
        if self._state != "closed" and self._killer is None:
            self._killer = self._clock.call_later(self._grace, self._kill_round)

    def _kill_round(self) -> None:
        self._killing = True
        self._kill_now(block=False)

    def _kill_now(self, block: bool) -> None:
        self._killing = True
        children = [g for g in self._children if not g.dead]
        if block:
            gevent.killall(children, block=True, timeout=KILL_GRACE)
        else:
            for greenlet in children:
                greenlet.kill(block=False)

    # -- leaving ---------------------------------------------------------------

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> bool:
        stack = _scopes.get(self._body)
        if stack:
            stack.remove(self._ctx)
        interrupt = None
        echo = False
        if exc is not None:
            if isinstance(exc, _INTERRUPTS) or not isinstance(exc, Exception):
                interrupt = exc
                self._ctx.cancel()
                self._kill_now(block=False)
            elif isinstance(exc, ContextError) and self._ctx.err is not None:
                echo = True
            else:
                self._failed(exc, "body")
        try:
            self._wait_children()
        except BaseException:
            # Killed or interrupted while waiting: take the children along.
            self._ctx.cancel()
            self._kill_now(block=True)
            self._close()
            raise
        err = self._ctx.err
        self._close()
        if interrupt is not None:
            return False
        if self._fatal is not None:
            raise self._fatal
        if self._errors:
            raise BaseExceptionGroup(
                "task group %d: %d error(s)" % (self._id, len(self._errors)), list(self._errors)
            )
        if err is not None and not self._user_cancel:
            parent_err = self._parent.err
            if parent_err is not None:
                raise type(parent_err)(*parent_err.args)
            if isinstance(err, DeadlineExceeded):
                raise DeadlineExceeded("task group %d: timed out after %ss" % (self._id, self._timeout))
        return echo

    def _wait_children(self) -> None:
        while self._children:
            if self._all_done.wait(KILL_GRACE) or not self._killing:
                continue
            stubborn = [g for g in self._children if not g.dead]
            if stubborn and not self._stubborn_logged:
                self._stubborn_logged = True
                logger.error(
                    "task group %d: %d child(ren) still alive after GreenletExit, killing again: %s",
                    self._id,
                    len(stubborn),
                    ", ".join(g.name for g in stubborn),
                )
            self._kill_now(block=False)

    def _close(self) -> None:
        self._state = "closed"
        if self._killer is not None:
            self._killer.cancel()
        self._ctx.done.unlink(self._on_done)
        # Release the context from its parent (a derived context is released by cancelling it).
        self._ctx.cancel()

    def __repr__(self) -> str:
        return "<greenworks.TaskGroup %d %s children=%d errors=%d>" % (
            self._id,
            self._state,
            len(self._children),
            len(self._errors),
        )


def task_group(
    ctx: Any = None, timeout: Any = None, *, grace: Any = DEFAULT_GRACE, clock: ClockLike | None = None
) -> TaskGroup:
    """Return a task group to use in a ``with`` block (see the module docstring for the rules).

    :param ctx: the parent `IContext`; ``None``: the innermost group this
        greenlet runs in (its body or one of its children), else ``background()``.
    :param timeout: seconds from entering the block after which the group is
        cancelled and, without other errors, raises ``DeadlineExceeded``.
    :keyword float grace: seconds children get after the cancellation before
        they are killed (default :data:`DEFAULT_GRACE`; 0: at once).
    :keyword clock: the `IClock` of *timeout* and *grace* (default: the parent context's).
    :raises InvalidArgument: for a bad argument, naming it.
    """
    return TaskGroup(ctx, timeout, grace=grace, clock=clock)
