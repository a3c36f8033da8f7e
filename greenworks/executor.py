"""
GreenExecutor: the ``concurrent.futures.Executor`` applications already use, on greenlets.

Where a monkey-patched application has ``ThreadPoolExecutor(32)``,
``GreenExecutor(32)`` does the same job with worker greenlets of an elastic
:class:`~greenworks.dispatcher.Dispatcher`::

    with GreenExecutor(32) as pool:
        futures = [pool.submit(fetch, url) for url in urls]
        for future in concurrent.futures.as_completed(futures):
            print(future.result())

Nothing else changes: ``submit`` returns a genuine
``concurrent.futures.Future`` (``type(f) is concurrent.futures.Future``), so
``wait``, ``as_completed``, ``add_done_callback``, ``cancel``,
``result(timeout)`` and ``exception()`` are the standard library's own code;
``map`` is the standard library's (the same ordering, timeout and exception
rules); ``shutdown(wait, cancel_futures)``, the context manager,
``initializer``/``initargs`` and the join at interpreter exit behave as
ThreadPoolExecutor's. Only the lock under each future differs: not the
``threading.Condition`` that monkey-patching turns into pure-Python locks
(the larger part of a trivial task's cost), but a C lock whose waits are
gevent's (:mod:`greenworks._futures`), so a greenlet waiting on a future
yields to the hub like any other and a real OS thread (gevent's threadpool)
may wait on one too: ``result()`` and ``exception()`` on every supported
gevent; ``cf.wait`` and ``as_completed`` from another OS thread need gevent
26.8 or newer (older gevent hangs the hub in a monkey-patched
``threading.Event.set()`` that another thread waits on, with any executor).

How it differs, on purpose:

- Workers are greenlets: they grow on demand up to ``max_workers`` (default
  :data:`DEFAULT_MAX_WORKERS`, 100, not ThreadPoolExecutor's
  ``min(32, cpus + 4)``: a parked greenlet costs a few KB, not a thread), and
  idle ones above ``min_workers`` leave after a quiet period.
- It is a greenworks component: ``name``, ``state``, ``stats()``,
  ``snapshot()``, and ``stop(timeout)``, which after *timeout* cancels what
  has not started and kills what still runs (those futures get
  :class:`~greenworks.exceptions.TaskKilledError`) and returns False.
- ``task_timeout`` interrupts a task that runs too long; its future gets
  the ``gevent.Timeout``.
- It belongs to the hub of the thread that built it: submit from greenlets
  of that thread, not from other OS threads.
- Bad arguments are refused at once with ``InvalidArgument`` (a
  ``ValueError``), ``submit(non_callable)`` included.
"""

import atexit
import concurrent.futures as cf
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

import gevent
from gevent import Greenlet, GreenletExit
from greenlet import getcurrent
from zope.interface import implementer

from greenworks import _checks, _greenlets
from greenworks._component import KILL_GRACE, Lifecycle, State
from greenworks._futures import green_future
from greenworks.clock import ClockLike
from greenworks.dispatcher import Dispatcher
from greenworks.exceptions import (
    BrokenExecutorError,
    ReentrantStopError,
    TaskKilledError,
    invalid_argument,
)
from greenworks.interfaces import IGreenExecutor

_T = TypeVar("_T")
_P = ParamSpec("_P")

__all__ = ["DEFAULT_MAX_WORKERS", "GreenExecutor"]

logger = logging.getLogger(__name__)

#: Worker greenlets when ``max_workers`` is None. Sized for I/O-bound work on
#: greenlets: enough to overlap a hundred waits, few enough that a runaway
#: submitter cannot start thousands of connections by accident.
DEFAULT_MAX_WORKERS = 100

#: The buffer of an executor built with ``max_buffered=None``: in practice
#: unbounded, like ThreadPoolExecutor's queue, so submit never overflows.
_UNBOUNDED = 2**62

_live: "weakref.WeakSet[GreenExecutor]" = weakref.WeakSet()
_exiting = False


def _at_exit() -> None:
    """At interpreter exit, wait for every open executor's work, as ThreadPoolExecutor does."""
    global _exiting
    _exiting = True
    for executor in list(_live):
        try:
            executor.shutdown(wait=True)
        except Exception:
            logger.exception("executor %r: shutdown at interpreter exit failed", executor.name)


# Where the stdlib registers ThreadPoolExecutor's join: before the atexit
# hooks, so a hook submitting work is refused as the stdlib refuses it.
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_at_exit)
else:  # pragma: no cover - an interpreter without the hook
    atexit.register(_at_exit)


def _orphaned(pool: Dispatcher, name: str) -> None:
    """The executor was garbage-collected without shutdown: let its pool finish and end."""
    _greenlets.spawn("greenworks.%s.shutdown" % name, pool.quit, True)


class _WorkItem:
    """One submitted call and its future; runs in a worker, then lets go of everything."""

    __slots__ = ("args", "executor", "fn", "future", "greenlet", "kwargs")

    def __init__(
        self,
        executor: "GreenExecutor",
        future: cf.Future[Any],
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
    ) -> None:
        self.executor: GreenExecutor | None = executor
        self.future: cf.Future[Any] | None = future
        self.fn: Callable[..., Any] | None = fn
        self.args = args
        self.kwargs = kwargs
        self.greenlet: Any = None

    def run(self) -> None:
        executor = self.executor
        future = self.future
        if executor is None or future is None:
            return  # settled while it waited (the executor broke)
        try:
            if executor._initializer is not None and not executor._initialize():
                return
            if not future.set_running_or_notify_cancel():
                executor._cancelled += 1
                return
            self.greenlet = getcurrent()
            executor._running += 1
            try:
                # fn is None only once the item settled, and then run() returned above.
                result = self.fn(*self.args, **self.kwargs)  # type: ignore[misc]
            except GreenletExit as exc:
                executor._failed += 1
                killed = TaskKilledError("task %r killed while running" % (self.fn,))
                killed.__cause__ = exc
                future.set_exception(killed)
                raise
            except BaseException as exc:
                # The stdlib hands every exception to the future, SystemExit included.
                executor._failed += 1
                future.set_exception(exc)
                if isinstance(exc, gevent.Timeout):
                    # Let the pool count a task_timeout interruption.
                    raise
            else:
                executor._completed += 1
                future.set_result(result)
            finally:
                executor._running -= 1
        finally:
            executor._items.pop(self, None)
            # Drop every reference: a parked worker still holds its last task.
            self.executor = self.future = self.fn = self.args = self.kwargs = self.greenlet = None


@implementer(IGreenExecutor)
class GreenExecutor(cf.Executor):
    """Default implementation of `IGreenExecutor`.

    :param int max_workers: the most worker greenlets (``None``: :data:`DEFAULT_MAX_WORKERS`).
    :keyword int min_workers: workers kept while running (default 0: grown on demand).
    :keyword int max_buffered: the pool's buffer (``None``: unbounded, as
        ThreadPoolExecutor's queue). Tasks beyond it wait in FIFO overflow:
        ``submit`` never blocks and never drops; the pool warns when it overflows.
    :keyword str name: names the greenlets (``greenworks.<name>[3]``), logs and snapshot.
    :keyword task_timeout: seconds a task may run before it is interrupted (``None``: no limit).
    :keyword initializer: called as ``initializer(*initargs)`` in each worker
        greenlet before its first task; if it raises, the executor is broken
        (`BrokenExecutorError` for every task not started and every later submit).
    :keyword clock: the `IClock` of the pool's watchdog and scale-down (and ``stop``'s timeout).
    :keyword logger: a ``logging.Logger`` (default ``greenworks.executor``).
    :raises InvalidArgument: for a bad argument, naming it (``max_workers <= 0``
        reads "max_workers must be greater than 0", the stdlib's words).
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        min_workers: int = 0,
        max_buffered: int | None = None,
        name: str = "executor",
        task_timeout: float | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        clock: ClockLike | None = None,
        logger: Any = None,
    ) -> None:
        if max_workers is None:
            max_workers = DEFAULT_MAX_WORKERS
        elif not _checks.is_int(max_workers) or max_workers <= 0:
            raise invalid_argument("max_workers", max_workers, "greater than 0 (an int, or None)")
        _checks.count("min_workers", min_workers)
        if min_workers > max_workers:
            raise invalid_argument("min_workers", min_workers, "<= max_workers (%d)" % max_workers)
        _checks.count("max_buffered", max_buffered, none=True)
        task_timeout = _checks.seconds("task_timeout", task_timeout, none=True, positive=True)
        if initializer is not None and not callable(initializer):
            raise invalid_argument("initializer", initializer, "a callable or None")
        self._life = Lifecycle(self, "executor", name, clock, logger, __name__)
        self._max_workers = max_workers
        self._min_workers = min_workers
        self._max_buffered = max_buffered
        self._task_timeout = task_timeout
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._initialized: weakref.WeakSet[Any] = weakref.WeakSet()
        self._pool = Dispatcher(
            _UNBOUNDED if max_buffered is None else max_buffered,
            min_workers,
            max_workers,
            task_timeout=task_timeout,
            overflow="queue",
            name=self._life.name,
            clock=self._life.clock,
            logger=self._life.logger,
        )
        # Every accepted item not finished yet, in submission order.
        self._items: dict[_WorkItem, None] = {}
        self._shutdown = True
        self._broken: str | None = None
        self._drainer: Greenlet | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._submitted = self._completed = self._failed = self._cancelled = self._running = 0
        self.start()

    # -- IComponent ------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._life.name

    @property
    def state(self) -> State:
        return self._life.state

    @property
    def max_workers(self) -> int:
        return self._max_workers

    @property
    def min_workers(self) -> int:
        return self._min_workers

    def start(self) -> "GreenExecutor":
        """Open the executor (it is open from construction); idempotent. Never blocks.

        After a completed shutdown it opens again and ``submit`` works again.

        :raises RuntimeError: a shutdown is still running the backlog.
        """
        state = self._life.state
        if state is State.RUNNING:
            return self
        if state is State.STOPPING:
            raise RuntimeError("executor %r is shutting down; start() it once it stopped" % self.name)
        self._shutdown = False
        self._pool.run()
        self._finalizer = weakref.finalize(self, _orphaned, self._pool, self.name)
        self._finalizer.atexit = False
        _live.add(self)
        self._life.started()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Shut down, wait up to *timeout* seconds for the work, then give up on what is left.

        Blocks. What has not started when *timeout* passes is cancelled and
        what still runs is killed (its future gets `TaskKilledError`).

        :return bool: True if every task ended by itself in time.
        :raises ReentrantStopError: called from one of its own tasks.
        """
        timeout = _checks.seconds("timeout", timeout, none=True)
        self._check_not_own("stop")
        self.shutdown(wait=False)
        if self._life.wait_stopped(timeout):
            return True
        items = list(self._items)
        for item in items:
            future = item.future
            if item.greenlet is None and future is not None:
                future.cancel()
        running = [item.greenlet for item in items if item.greenlet is not None]
        self._life.logger.warning(
            "executor %r: killing %d task(s) still running after %ss", self.name, len(running), timeout
        )
        gevent.killall(running, block=True, timeout=KILL_GRACE)
        drainer = self._drainer
        if drainer is not None:
            drainer.join(KILL_GRACE)
        return False

    def __enter__(self) -> "GreenExecutor":
        return self.start()

    # -- Executor --------------------------------------------------------------

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> cf.Future[_T]:
        """See `IGreenExecutor.submit`. Never switches."""
        if self._broken is not None:
            raise BrokenExecutorError(self._broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _exiting:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        if not callable(fn):
            raise invalid_argument("fn", fn, "a callable")
        future: cf.Future[_T] = green_future()
        item = _WorkItem(self, future, fn, args, kwargs)
        self._items[item] = None
        self._submitted += 1
        self._pool.dispatch(item.run)
        return future

    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[_T]:
        """The stdlib's ``Executor.map``: every call submitted now, results in input order.

        Iterating blocks for each result; it raises the call's exception in
        its place, ``TimeoutError`` once *timeout* seconds (real time, from
        this call) passed, and cancels what is left when it stops early.
        *chunksize* is accepted and ignored, as by ThreadPoolExecutor.

        :raises InvalidArgument: a bad *timeout* or *chunksize* (``timeout <= 0``: do not wait).
        """
        timeout = _checks.seconds("timeout", timeout, none=True, negative=True)
        _checks.count("chunksize", chunksize, minimum=1)
        return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """See `IGreenExecutor.shutdown`; the stdlib's semantics."""
        if wait:
            self._check_not_own("shutdown")
        if cancel_futures:
            for item in list(self._items):
                future = item.future
                if item.greenlet is None and future is not None:
                    future.cancel()
        if not self._shutdown:
            self._shutdown = True
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
            self._life.state = State.STOPPING
            self._drainer = self._life.spawn("greenworks.%s.shutdown" % self.name, self._drain)
        if wait:
            self._life.wait_stopped()

    def _drain(self) -> None:
        self._pool.quit(drain=True)
        self._life.logger.info("executor %r: shut down (%d tasks run)", self.name, self._submitted)
        _live.discard(self)
        self._life.stopped(True)

    def _check_not_own(self, method: str) -> None:
        current = getcurrent()
        if any(item.greenlet is current for item in list(self._items)):
            raise ReentrantStopError(
                "executor %r: %s() called from one of its own tasks, which it would wait for"
                % (self.name, method)
            )

    # -- initializer -----------------------------------------------------------

    def _initialize(self) -> bool:
        """Run the initializer once per worker greenlet; False (executor broken) if it raised."""
        current = getcurrent()
        if current in self._initialized:
            return True
        if self._broken is None:
            try:
                # Not None: run() calls _initialize only when there is an initializer.
                self._initializer(*self._initargs)  # type: ignore[misc]
            except Exception:
                self._life.logger.exception(
                    "executor %r: initializer %r failed; the executor is broken", self.name, self._initializer
                )
                self._break("A greenlet initializer failed, the executor is not usable anymore")
            else:
                self._initialized.add(current)
                return True
        return False

    def _break(self, reason: str) -> None:
        self._broken = reason
        for item in list(self._items):
            future = item.future
            if item.greenlet is None and future is not None and not future.done():
                future.set_exception(BrokenExecutorError(reason))
                item.executor = item.future = item.fn = item.args = item.kwargs = None
                self._items.pop(item, None)

    # -- introspection ---------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """See `IGreenExecutor.stats`."""
        pool = self._pool.stats()
        return {
            "submitted": self._submitted,
            "pending": len(self._items) - self._running,
            "running": self._running,
            "completed": self._completed,
            "failed": self._failed,
            "cancelled": self._cancelled,
            "workers": pool["workers"],
            "idle": pool["idle"],
        }

    def snapshot(self) -> dict[str, Any]:
        """See `IStatusSource.snapshot`: the header, the bounds, ``stats()`` and the pool's snapshot."""
        snap = self._life.header()
        snap.update(
            max_workers=self._max_workers,
            min_workers=self._min_workers,
            max_buffered=self._max_buffered,
            task_timeout=self._task_timeout,
            broken=self._broken,
        )
        snap.update(self.stats())
        snap["pool"] = self._pool.snapshot()
        return snap

    def __repr__(self) -> str:
        return "<greenworks.GreenExecutor %r %s max_workers=%d pending=%d running=%d>" % (
            self.name,
            self._life.state.value,
            self._max_workers,
            len(self._items) - self._running,
            self._running,
        )
