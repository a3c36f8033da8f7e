"""
What a Dispatcher runs: the task check, the handle ``submit()`` returns, the
overflow stack and the retry task.

Kept apart from :mod:`greenworks.dispatcher` so that module holds only the
pool's machinery. Everything here is public through that module.
"""

import functools
import logging
import types
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from gevent import GreenletExit
from gevent.event import AsyncResult
from zope.interface import implementer

from greenworks import _checks
from greenworks.clock import ClockLike, get_clock
from greenworks.exceptions import Canceled, EmptyStackError, invalid_argument
from greenworks.interfaces import IDispatchTask, ITaskStack

__all__ = ["RetryTask", "TaskHandle", "TaskStack"]

_T = TypeVar("_T")

logger = logging.getLogger("greenworks.dispatcher")


@implementer(ITaskStack)
class TaskStack:
    """Default implementation of `ITaskStack`.

    A plain list with the top at its end, so push and pop are O(1). It is not
    locked: greenlets only switch at blocking calls, and none of these block.
    The Dispatcher reads the list directly on its hot path.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any] = ()) -> None:
        try:
            self._items = list(items)
        except TypeError:
            raise invalid_argument("items", items, "an iterable of tasks") from None

    def size(self) -> int:
        return len(self._items)

    def push(self, task: Any) -> None:
        self._items.append(task)

    def pop(self) -> Any:
        try:
            return self._items.pop()
        except IndexError:
            raise EmptyStackError() from None

    def peek(self) -> Any:
        try:
            return self._items[-1]
        except IndexError:
            raise EmptyStackError() from None

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return "<greenworks.dispatcher.TaskStack size=%d>" % len(self._items)


def _check_task(task: Any, name: str = "task") -> Callable[[], Any]:
    """Return the zero-argument callable that runs *task*.

    An `IDispatchTask` (anything with a callable ``execute``) runs its
    ``execute``; otherwise *task* itself must be callable.

    :raises InvalidArgument: naming *name* if *task* is neither.
    """
    execute: Callable[[], Any] | None = getattr(task, "execute", None)
    if execute is not None and callable(execute):
        return execute
    if callable(task):
        run: Callable[[], Any] = task
        return run
    raise invalid_argument(name, task, "a callable or an IDispatchTask with execute()")


class TaskHandle(AsyncResult, Generic[_T]):  # type: ignore[misc]  # gevent's AsyncResult is untyped (Any)
    """The handle ``Dispatcher.submit()`` returns: a gevent ``AsyncResult`` that is also the task.

    One object instead of a record plus an AsyncResult: ``submit()`` then
    costs about what a raw queue of ``(fn, args, AsyncResult)`` items does.
    Running it calls ``fn(*args, **kwargs)``; the outcome is set before an
    exception goes on to the worker, which counts it, so a watchdog timeout or
    a kill reaches the caller too. The call's references are dropped once it
    started (``fn``) and once it ran (``args``).

    Beyond ``AsyncResult`` (``get``, ``wait``, ``ready``, ``successful``,
    ``exception``, ``rawlink``) it offers the ``concurrent.futures.Future``
    verbs a caller reaches for: :meth:`cancel`, :meth:`cancelled`,
    :meth:`done`, :meth:`result` and :meth:`add_done_callback`.
    """

    # Two slots, written once each by submit() and once each by the run:
    # _fn is the callable until the task starts (None from then on, so
    # "started" is "_fn is None and not ready()"); _args the positional
    # arguments until it ran (then ()), or _CANCELLED once cancel() kept it
    # from running.
    __slots__ = ("_fn", "_args")

    _fn: Callable[..., _T] | None
    _args: tuple[Any, ...]

    def __call__(self) -> None:
        fn = self._fn
        if fn is None:
            # Cancelled while it waited (its handle already holds Canceled), or already run.
            return
        self._fn = None
        try:
            value = fn(*self._args)
        except GreenletExit as exc:
            self._args = ()
            self.set_exception(Canceled("the worker running %r was killed (%r)" % (fn, exc)))
            raise
        except BaseException as exc:
            self._args = ()
            self.set_exception(exc)
            raise
        self._args = ()
        self.set(value)

    def cancel(self) -> bool:
        """Keep the task from running if it has not started; return whether it was cancelled.

        A cancelled handle holds a `Canceled`: ``get()`` raises it at once.
        Never switches (the waiters wake at the next switch).

        :return bool: True if the task had not started (it will not run);
            False if it is running or done.
        """
        if self.ready():
            return self.cancelled()
        fn = self._fn
        if fn is None:
            return False
        self._fn = None
        self._args = _CANCELLED
        self.set_exception(Canceled("task %r was cancelled before it ran" % (fn,)))
        return True

    def cancelled(self) -> bool:
        """Whether :meth:`cancel` (or a stop with ``cancel_pending``) kept the task from running."""
        return self._args is _CANCELLED

    def done(self) -> bool:
        """Whether the outcome is known (ran, failed or was cancelled); never blocks."""
        return bool(self.ready())

    if TYPE_CHECKING:
        # For type checkers only: at run time get() stays AsyncResult's
        # compiled method (a Python override would slow every get()).
        def get(self, block: bool = True, timeout: float | None = None) -> _T:
            """Block until the outcome is known; return the value or raise the exception."""

    def result(self, timeout: float | None = None) -> _T:
        """Block until the outcome is known and return it (``get(timeout=timeout)``).

        :raises gevent.Timeout: *timeout* seconds passed first.
        :raises: the task's exception, or `Canceled`.
        """
        value: _T = AsyncResult.get(self, True, timeout)
        return value

    def add_done_callback(self, fn: "Callable[[TaskHandle[_T]], object]") -> None:
        """Call ``fn(handle)`` once the outcome is known (at once, in a hub callback, if it is).

        Runs in the hub, like ``rawlink`` callbacks: *fn* must not block. An
        exception from *fn* is logged and ignored.

        :raises InvalidArgument: if *fn* is not callable.
        """
        if not callable(fn):
            raise invalid_argument("fn", fn, "a callable fn(handle)")
        self.rawlink(functools.partial(_run_done_callback, fn))

    def __repr__(self) -> str:
        state = "pending" if not self.ready() else ("cancelled" if self.cancelled() else "done")
        return "<greenworks.dispatcher.TaskHandle %s %r>" % (state, self._fn)


#: What a cancelled handle's ``_args`` holds (a tuple nothing else is).
_CANCELLED: tuple[Any, ...] = (object(),)


def _run_done_callback(fn: Callable[[Any], object], handle: Any) -> None:
    try:
        fn(handle)
    except Exception:
        logger.exception("done callback %r of %r raised", fn, handle)


#: Types that are certainly zero-argument-callable tasks without ``execute``;
#: dispatch() skips the slower check for them.
PLAIN_TASK_TYPES = frozenset(
    {
        types.FunctionType,
        types.MethodType,
        types.BuiltinFunctionType,
        types.BuiltinMethodType,
        functools.partial,
        TaskHandle,
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

    def __init__(
        self,
        task: Any,
        retry: Callable[[], object],
        retries: int,
        period: float,
        clock: ClockLike | None = None,
    ) -> None:
        self._run = _check_task(task)
        if not callable(retry):
            raise invalid_argument("retry", retry, "a callable returning bool")
        if not _checks.is_int(retries):
            raise invalid_argument("retries", retries, "an int")
        self.task = task
        self._retry = retry
        self._retries = retries
        self._period = _checks.seconds("period", period)
        self._clock = get_clock(clock)

    def execute(self) -> None:
        keep_going: object = True
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

    def __repr__(self) -> str:
        return "<greenworks.dispatcher.RetryTask %r retries=%d period=%r>" % (
            self.task,
            self._retries,
            self._period,
        )
