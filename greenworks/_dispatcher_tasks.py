"""
The task-side pieces of the Dispatcher: the overflow stack, the retry task and
the per-call record behind ``submit()``.

Kept apart from :mod:`greenworks.dispatcher` so that module holds only the
pool's machinery. Everything here is public through that module.
"""

import functools
import logging
import types

from gevent.event import AsyncResult
from zope.interface import implementer

from greenworks._checks import is_int, is_real
from greenworks.clock import get_clock
from greenworks.exceptions import EmptyStackError, invalid_argument
from greenworks.interfaces import IDispatchTask, ITaskStack

__all__ = ["RetryTask", "TaskStack"]

logger = logging.getLogger("greenworks.dispatcher")


@implementer(ITaskStack)
class TaskStack:
    """Default implementation of `ITaskStack`.

    A plain list with the top at its end, so push and pop are O(1). It is not
    locked: greenlets only switch at blocking calls, and none of these block.
    The Dispatcher reads the list directly on its hot path.
    """

    __slots__ = ("_items",)

    def __init__(self, items=()):
        self._items = list(items)

    def size(self):
        return len(self._items)

    def push(self, task):
        self._items.append(task)

    def pop(self):
        try:
            return self._items.pop()
        except IndexError:
            raise EmptyStackError() from None

    def peek(self):
        try:
            return self._items[-1]
        except IndexError:
            raise EmptyStackError() from None

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return "<greenworks.dispatcher.TaskStack size=%d>" % len(self._items)


def _check_task(task, name="task"):
    """Return the zero-argument callable that runs *task*.

    An `IDispatchTask` (anything with a callable ``execute``) runs its
    ``execute``; otherwise *task* itself must be callable.

    :raises InvalidArgument: naming *name* if *task* is neither.
    """
    execute = getattr(task, "execute", None)
    if execute is not None and callable(execute):
        return execute
    if callable(task):
        return task
    raise invalid_argument(name, task, "a callable or an IDispatchTask with execute()")


class _Call(AsyncResult):
    """The AsyncResult ``submit()`` returns, which is also the task that fills it.

    One object instead of a record plus an AsyncResult: ``submit()`` is then
    within a factor of two of a raw queue of ``(fn, AsyncResult)`` pairs.
    Running it calls ``fn(*args, **kwargs)``; the outcome is set before an
    exception goes on to the worker, which counts it, so a watchdog timeout or
    a kill reaches the caller too. The call's references are dropped once it
    succeeded.
    """

    __slots__ = ("_fn", "_args", "_kwargs")

    def __call__(self):
        try:
            value = self._fn(*self._args, **self._kwargs)
        except BaseException as exc:
            self.set_exception(exc)
            raise
        self._fn = self._args = self._kwargs = None
        self.set(value)

    def __repr__(self):
        return "<submitted call %r>" % (self._fn,)


#: Types that are certainly zero-argument-callable tasks without ``execute``;
#: dispatch() skips the slower check for them.
PLAIN_TASK_TYPES = frozenset(
    {
        types.FunctionType,
        types.MethodType,
        types.BuiltinFunctionType,
        types.BuiltinMethodType,
        functools.partial,
        _Call,
    }
)


@implementer(IDispatchTask)
class RetryTask:
    """Run *task* up to *retries* times while *retry()* says so (Go's v1 ``NewRetryTask``).

    Attempt ``i`` (counting from 0) starts after sleeping ``5 * i * period``
    seconds on *clock*: no sleep, then 5p, then 10p, ... After each attempt
    ``retry()`` is called; when it returns a false value no further attempt
    is made. The attempts' exceptions are ignored (logged at DEBUG) and
    :meth:`execute` always returns None, as in the seed; ``retry`` never sees
    the error.

    :param task: an `IDispatchTask` or a zero-argument callable.
    :param retry: a zero-argument callable returning bool.
    :param int retries: the most attempts made (``<= 0``: none).
    :param float period: seconds; the sleep before attempt ``i`` is ``5*i*period``.
    :param clock: the `IClock` to sleep on (``None``: the real clock).
    :raises InvalidArgument: for a bad argument, naming it.
    """

    __slots__ = ("_clock", "_period", "_retries", "_retry", "_run", "task")

    def __init__(self, task, retry, retries, period, clock=None):
        self._run = _check_task(task)
        if not callable(retry):
            raise invalid_argument("retry", retry, "a callable returning bool")
        if not is_int(retries):
            raise invalid_argument("retries", retries, "an int")
        if not is_real(period) or not period >= 0:
            raise invalid_argument("period", period, "a number of seconds >= 0")
        self.task = task
        self._retry = retry
        self._retries = retries
        self._period = float(period)
        self._clock = get_clock(clock)

    def execute(self):
        keep_going = True
        attempt = 0
        while attempt < self._retries and keep_going:
            self._clock.sleep(self._period * attempt * 5)
            try:
                self._run()
            except Exception:
                logger.debug("retry task attempt %d of %r failed", attempt, self.task, exc_info=True)
            keep_going = self._retry()
            attempt += 1
        return None

    __call__ = execute

    def __repr__(self):
        return "<greenworks.dispatcher.RetryTask %r retries=%d period=%r>" % (
            self.task,
            self._retries,
            self._period,
        )
