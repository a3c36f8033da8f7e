"""
``map``, ``imap`` and ``imap_unordered`` over a Dispatcher, with gevent Pool's semantics.

The Dispatcher's three methods of these names call the functions here with
the pool as first argument; they use nothing but its public ``dispatch()``
and ``name``.

How it works:

- A feeding greenlet (``greenworks.<pool>.imap``) walks ``zip(*iterables)``
  and puts one task per item into the pool with ``dispatch(block=True)``. A
  full buffer makes it wait for room, which is the backpressure gevent's
  ``Pool.imap`` gets from ``spawn`` blocking on a full pool: a long (or
  endless) input is read only as fast as the pool works through it.
- With ``maxsize`` it also takes a semaphore place before each item, and
  every ``next()`` gives one back (gevent's rule): no more than *maxsize*
  items are dispatched and not yet read.
- Each task puts ``(index, outcome)`` on a queue the reader drains. ``imap``
  keeps early arrivals in a dict until their turn; ``imap_unordered`` hands
  them out as they come.
- A failure is raised in the failed item's place; the iterator can be read
  on past it. An exception of an input iterable is raised after the results
  of the items before it, and ends the iteration.

``close()`` (or leaving ``with``, or garbage collection) kills the feeder:
nothing more is dispatched; tasks already dispatched still run, and their
results are dropped.
"""

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from gevent.event import Event
from gevent.lock import Semaphore

from greenworks import _checks, _greenlets
from greenworks.exceptions import invalid_argument

__all__ = ["MapIterator", "imap", "imap_unordered", "map"]

_OK = 0
_FAILED = 1
_END = 2


class _Inbox:
    """The reader's results: a deque and an Event, for one reader and any number of writers.

    Not gevent's ``SimpleQueue``: before gevent 25.4 its ``put`` could stop
    waking a reader while a worker and the feeder kept handing the hub to
    each other, so an endless input ran away unread. An Event's wake-up is
    the same on every gevent. ``put`` never switches; ``get`` blocks (yields
    to the hub) until there is an item.
    """

    __slots__ = ("_items", "_ready", "_waiting")

    def __init__(self) -> None:
        self._items: deque[tuple[int, Any, Any]] = deque()
        self._ready = Event()
        self._waiting = False  # the reader is (about to be) parked on _ready

    def put(self, item: tuple[int, Any, Any]) -> None:
        self._items.append(item)
        if self._waiting:
            # Only a parked reader needs the Event: most puts find it busy.
            self._waiting = False
            self._ready.set()

    def get(self) -> tuple[int, Any, Any]:
        items = self._items
        # No switch between the test and wait(): a put after the test sets the Event.
        while not items:
            self._waiting = True
            self._ready.clear()
            self._ready.wait()
        return items.popleft()


class _Task:
    """One item: runs ``fn(*args)`` in a worker and reports to the reader's queue."""

    __slots__ = ("args", "fn", "index", "queue")

    def __init__(self, queue: _Inbox, index: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.queue = queue
        self.index = index
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] | None = args

    def run(self) -> None:
        fn, args, self.fn, self.args = self.fn, self.args, None, None
        if fn is None or args is None:
            return  # run twice: never by the pool
        try:
            value = fn(*args)
        except Exception as exc:
            # The reader gets it; re-raising would have the pool log it too.
            self.queue.put((self.index, _FAILED, exc))
        except BaseException as exc:
            # Killed or timed out: the reader must still hear of it, and the
            # worker must still see it (a kill ends the worker).
            self.queue.put((self.index, _FAILED, exc))
            raise
        else:
            self.queue.put((self.index, _OK, value))


def _feed(pool: Any, queue: _Inbox, slots: Semaphore | None, fn: Callable[..., Any], items: Any) -> None:
    """Dispatch one task per item, waiting for room (and for a place with *maxsize*)."""
    index = 0
    error = None
    try:
        for args in items:
            if slots is not None:
                slots.acquire()
            pool.dispatch(_Task(queue, index, fn, args).run, block=True)
            index += 1
    except Exception as exc:
        error = exc
    queue.put((index, _END, error))


class MapIterator:
    """The iterator ``imap`` and ``imap_unordered`` return.

    Not safe to read from two greenlets at once. ``next()`` blocks until
    the next result is in.
    """

    def __init__(
        self,
        pool: Any,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any], ...],
        maxsize: Any,
        ordered: bool,
    ) -> None:
        self._queue = _Inbox()
        self._slots = None if maxsize is None else Semaphore(maxsize)
        self._ordered = ordered
        self._early: dict[int, tuple[int, Any]] = {}
        self._next = 0
        self._total: int | None = None
        self._end_error: BaseException | None = None
        self._finished = False
        # The feeder holds the queue and semaphore, never this object, so an
        # iterator dropped unread is collected and its feeder killed.
        self._feeder = _greenlets.spawn(
            "greenworks.%s.imap" % pool.name,
            _feed,
            pool,
            self._queue,
            self._slots,
            fn,
            zip(*iterables, strict=False),
        )

    def __iter__(self) -> "MapIterator":
        return self

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        if self._slots is not None:
            self._slots.release()
        kind, value = self._take_ordered() if self._ordered else self._take_unordered()
        if kind == _OK:
            return value
        if kind == _FAILED:
            raise value
        self._finished = True
        if value is not None:
            raise value
        raise StopIteration

    def _take_ordered(self) -> tuple[int, Any]:
        early = self._early
        want = self._next
        while want not in early:
            index, kind, value = self._queue.get()
            early[index] = (kind, value)
        self._next += 1
        return early.pop(want)

    def _take_unordered(self) -> tuple[int, Any]:
        while True:
            if self._total is not None and self._next >= self._total:
                return _END, self._end_error
            index, kind, value = self._queue.get()
            if kind == _END:
                self._total, self._end_error = index, value
                continue
            self._next += 1
            return kind, value

    def close(self) -> None:
        """Stop feeding the pool. Blocks until the feeder has ended; idempotent."""
        self._finished = True
        self._feeder.kill(block=True)

    def __enter__(self) -> "MapIterator":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        feeder = getattr(self, "_feeder", None)
        if feeder is None or self._finished:
            return
        try:
            if not feeder.dead:
                # Never block in a finalizer: the kill is delivered at the next switch.
                feeder.kill(block=False)
        except Exception:  # at interpreter exit gevent may refuse: nothing is left to feed then
            pass


def _check(fn: Any, iterables: tuple[Any, ...], maxsize: Any) -> None:
    if not callable(fn):
        raise invalid_argument("fn", fn, "a callable")
    if not iterables:
        raise invalid_argument("iterables", iterables, "at least one iterable")
    _checks.count("maxsize", maxsize, minimum=1, none=True)


def imap(
    pool: Any, fn: Callable[..., Any], *iterables: Iterable[Any], maxsize: int | None = None
) -> MapIterator:
    """See `IMapping.imap`. Never blocks; the feeding starts at the next switch."""
    _check(fn, iterables, maxsize)
    return MapIterator(pool, fn, iterables, maxsize, ordered=True)


def imap_unordered(
    pool: Any, fn: Callable[..., Any], *iterables: Iterable[Any], maxsize: int | None = None
) -> MapIterator:
    """See `IMapping.imap_unordered`. Never blocks; the feeding starts at the next switch."""
    _check(fn, iterables, maxsize)
    return MapIterator(pool, fn, iterables, maxsize, ordered=False)


def map(pool: Any, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Any]:
    """See `IMapping.map`. Blocks until done or the first failure in input order."""
    _check(fn, iterables, None)
    with MapIterator(pool, fn, iterables, None, ordered=True) as results:
        return list(results)
