"""
Dispatcher: an elastic pool of worker greenlets fed from a bounded buffer.

The port of gadget's ``dispatcher`` (v1), without its bugs::

    pool = Dispatcher(1000, 10, 100)        # buffer, min workers, max workers
    pool.run()
    pool.dispatch(task)                     # True: buffered; False: buffer full
    result = pool.submit(fetch, url)        # an AsyncResult of fetch(url)
    pool.quit(drain=True)                   # run everything, then stop

How it works, and why it is fast:

- The *buffer* is a deque of at most ``max_buffered`` tasks. A task that
  finds it full goes to the *overflow* (``overflow="stack"``: a LIFO
  `TaskStack`, as in Go; ``"queue"``: FIFO; ``"reject"``: not kept) and
  ``dispatch`` returns False. Whenever a worker takes a task from the buffer
  it refills the buffer from the overflow, so nothing is ever stranded there.
- A worker greenlet drains the buffer in a tight loop and parks only when the
  buffer is empty. Idle workers park on a list of their own, each on its own
  waiter, and ``dispatch`` wakes the most recently parked one (LIFO keeps hot
  greenlets hot), so a wake-up costs the same with 10 or 10,000 idle workers.
  ``dispatch`` wakes a worker only while fewer workers are on their way than
  tasks are waiting; with nobody idle it grows the pool instead.
- Growing doubles the pool (at least one worker, never above the maximum)
  and never touches running workers. A supervisor greenlet halves the pool,
  never below the minimum, after ``wait_between_scale_downs`` seconds in which
  nothing was dispatched and nothing waited; idle workers leave first, busy
  ones after their current task.
- ``task_timeout`` is enforced by a watchdog greenlet rather than a
  ``gevent.Timeout`` per task (which would cost more than moving the task):
  every ``max(task_timeout / 10, 0.01)`` seconds it looks at each busy worker,
  and throws a ``gevent.Timeout`` into one still running the task it ran at
  the previous look once that task has run ``task_timeout`` seconds since it
  was first seen. A task is therefore interrupted between ``task_timeout``
  and ``task_timeout + max(task_timeout / 10, 0.01)`` seconds after it
  started.

Differences from the Go original, on purpose: ``quit(drain=True)`` runs every
task (no "misses" heuristic), ``min_workers=0`` works, ``quit()`` always stops
every worker, ``run()`` after ``quit()`` works, no task is dropped on exit,
growing does not stop running workers, and the overflow is refilled into the
buffer as room frees, not only when a task completes.
"""

import collections
import logging

import gevent
from gevent.event import Event
from gevent.hub import get_hub
from gevent.queue import Full
from greenlet import getcurrent
from zope.interface import implementer

from greenworks import _greenlets
from greenworks._checks import is_int, is_real
from greenworks._dispatcher_pool import (
    _BUSY,
    _DRAINING,
    _RUNNING,
    _STOPPED,
    _STOPPING,
    _WAKING,
    Status,
    _WorkerPool,
)
from greenworks._dispatcher_tasks import PLAIN_TASK_TYPES, RetryTask, TaskStack, _Call, _check_task
from greenworks.clock import get_clock
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IDispatcher

__all__ = [
    "DEFAULT_DISPATCH_MISSES_BEFORE_DRAINING",
    "DEFAULT_TASK_TIMEOUT",
    "DEFAULT_WAIT_BETWEEN_SCALE_DOWNS",
    "Dispatcher",
    "RetryTask",
    "Status",
    "TaskStack",
]

logger = logging.getLogger(__name__)

#: Seconds a task may run before the watchdog interrupts it (Go's ``DefaultTaskTimeout``).
DEFAULT_TASK_TIMEOUT = 10.0
#: Seconds without dispatches before the pool halves (Go: 5 minutes).
DEFAULT_WAIT_BETWEEN_SCALE_DOWNS = 300.0
#: Go's drain heuristic. Kept for parity only: draining here is exact and never counts misses.
DEFAULT_DISPATCH_MISSES_BEFORE_DRAINING = 5

#: Go logged the executing tasks whenever the overflow size hit a multiple of this.
OVERFLOW_LOG_EVERY = 20

_OVERFLOW_POLICIES = ("stack", "queue", "reject")


def _check_count(name, value):
    if not is_int(value):
        raise invalid_argument(name, value, "an int")
    return value


def _check_seconds(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if not is_real(value) or not value > 0:
        raise invalid_argument(name, value, "a number of seconds > 0" + (" or None" if allow_none else ""))
    return float(value)


@implementer(IDispatcher)
class Dispatcher(_WorkerPool):
    """Default implementation of `IDispatcher`.

    :param int max_buffered: the buffer's capacity (``>= 0``). With 0 a task
        is buffered only when an idle worker is there to take it.
    :param int min_workers: workers kept while running; negative means 0.
    :param int max_workers: the most workers; raised to *min_workers* if lower.
    :keyword task_timeout: seconds a task may run (``None``: no limit).
    :keyword float wait_between_scale_downs: seconds without dispatches before halving.
    :keyword str overflow: ``"stack"`` (LIFO, Go's), ``"queue"`` (FIFO) or ``"reject"``.
    :keyword str name: names the greenlets (``greenworks.<name>[3]``) and the snapshot.
    :keyword clock: the `IClock` for the watchdog and the scale-down supervisor.
    :keyword logger: a ``logging.Logger`` (default ``greenworks.dispatcher``).
    :raises InvalidArgument: naming the argument, for a non-integer count, a
        negative buffer, a bad timeout, policy or name.
    """

    def __init__(
        self,
        max_buffered,
        min_workers,
        max_workers,
        *,
        task_timeout=DEFAULT_TASK_TIMEOUT,
        wait_between_scale_downs=DEFAULT_WAIT_BETWEEN_SCALE_DOWNS,
        overflow="stack",
        name="dispatcher",
        clock=None,
        logger=None,
    ):
        _check_count("max_buffered", max_buffered)
        if max_buffered < 0:
            raise invalid_argument("max_buffered", max_buffered, "an int >= 0")
        _check_count("min_workers", min_workers)
        _check_count("max_workers", max_workers)
        if overflow not in _OVERFLOW_POLICIES:
            raise invalid_argument("overflow", overflow, 'one of "stack", "queue", "reject"')
        if not isinstance(name, str) or not name:
            raise invalid_argument("name", name, "a non-empty str")
        self._task_timeout = _check_seconds("task_timeout", task_timeout, allow_none=True)
        self._wait_between_scale_downs = _check_seconds("wait_between_scale_downs", wait_between_scale_downs)
        self._clock = get_clock(clock)
        self._logger = logging.getLogger(__name__) if logger is None else logger
        self._name = name
        self._max_buffered = max_buffered
        self._min_workers = max(0, min_workers)
        self._max_workers = max(self._min_workers, max_workers)
        self._policy = overflow
        self._status = _STOPPED
        self._buffer = collections.deque()
        self._stack, self._overflow, self._overflow_pop = self._new_overflow(())
        self._room_waiters = collections.deque()
        self._idle = []
        self._workers = {}
        self._waking = 0
        # Growth is allowed up to this many workers; 0 while not running.
        self._grow_limit = 0
        self._next_index = 0
        self._run_callback = None
        self._supervisors = []
        self._changed = Event()
        self._stopped = Event()
        self._stopped.set()
        self._quitter = None
        self._at_max = False
        self._pinned_logged_at = None
        # Counters; plain ints because the hot path bumps some of them.
        self._dispatched = 0
        self._retired_done = 0
        self._failed = 0
        self._timed_out = 0
        self._rejected = 0
        self._scale_ups = 0
        self._scale_downs = 0

    def _new_overflow(self, items):
        if self._policy == "stack":
            stack = TaskStack(items)
            return stack, stack._items, stack._items.pop
        if self._policy == "queue":
            queue = collections.deque(items)
            return None, queue, queue.popleft
        return None, (), None

    # -- properties ------------------------------------------------------------

    @property
    def status(self):
        return self._status

    @property
    def name(self):
        return self._name

    @property
    def worker_count(self):
        return len(self._workers)

    @property
    def min_workers(self):
        return self._min_workers

    @property
    def max_workers(self):
        return self._max_workers

    @property
    def max_buffered(self):
        return self._max_buffered

    @property
    def overflow(self):
        """The overflow `TaskStack` (``overflow="stack"`` only; else None)."""
        return self._stack

    # -- dispatching -----------------------------------------------------------

    def dispatch(self, task, block=False, timeout=None):
        """See `IDispatcher.dispatch`. Never switches unless *block* is true.

        :raises InvalidArgument: if *task* is neither callable nor an `IDispatchTask`.
        """
        if type(task) not in PLAIN_TASK_TYPES:
            task = _check_task(task)
        self._dispatched += 1
        buf = self._buffer
        n = len(buf)
        if n < self._max_buffered or (self._idle and self._waking <= n):
            buf.append(task)
            if self._waking <= n:
                # Fewer workers are on their way than tasks wait: fetch one more.
                idle = self._idle
                if idle:
                    worker = idle.pop()
                    worker.state = _WAKING
                    self._waking += 1
                    self._run_callback(worker.waiter.switch, None)
                elif not self._at_max:
                    self._no_idle_worker()
            return True
        return self._overflowed(task, block, timeout)

    def submit(self, fn, *args, **kwargs):
        """See `IDispatcher.submit`. Never switches.

        The AsyncResult gets ``fn``'s return value or exception (including the
        watchdog's ``gevent.Timeout``). With ``overflow="reject"`` and a full
        buffer it gets a ``gevent.queue.Full`` at once. Failures are counted,
        and logged only at DEBUG, since the caller receives them.

        :raises InvalidArgument: if *fn* is not callable.
        """
        if not callable(fn):
            raise invalid_argument("fn", fn, "a callable")
        task = _Call()
        task._fn = fn
        task._args = args
        task._kwargs = kwargs
        # dispatch()'s fast path, inlined: the call would cost a fifth of submit().
        self._dispatched += 1
        buf = self._buffer
        n = len(buf)
        if n < self._max_buffered or (self._idle and self._waking <= n):
            buf.append(task)
            if self._waking <= n:
                idle = self._idle
                if idle:
                    worker = idle.pop()
                    worker.state = _WAKING
                    self._waking += 1
                    self._run_callback(worker.waiter.switch, None)
                elif not self._at_max:
                    self._no_idle_worker()
        elif not self._overflowed(task, False, None) and self._overflow_pop is None:
            task.set_exception(Full("dispatcher %r: buffer full, task rejected" % self._name))
        return task

    def _overflowed(self, task, block, timeout):
        if block and self._wait_for_room(task, timeout):
            return True
        if self._overflow_pop is None:
            self._rejected += 1
            return False
        overflow = self._overflow
        overflow.append(task)
        size = len(overflow)
        if size == 1:
            self._logger.warning(
                "dispatcher %r: buffer full (%d), overflowing (%d workers, %d busy)",
                self._name,
                self._max_buffered,
                len(self._workers),
                len(self._workers) - len(self._idle),
            )
        elif size % OVERFLOW_LOG_EVERY == 0:
            self._logger.debug("dispatcher %r: %d tasks in overflow", self._name, size)
        if not self._idle and len(self._workers) < self._grow_limit:
            self._grow()
        return False

    def _wait_for_room(self, task, timeout):
        """Block until the buffer has room for *task* and place it; False on timeout."""
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        room = Event()
        waiters = self._room_waiters
        waiters.append(room)
        try:
            while True:
                remaining = None if deadline is None else deadline - clock.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                clock.wait(room, remaining)
                room.clear()
                if self._has_room():
                    # Leave the waiter list first so the place() below is not
                    # mistaken for room still being wanted.
                    waiters.remove(room)
                    room = None
                    self._place(task)
                    return True
        finally:
            if room is not None:
                waiters.remove(room)

    def _has_room(self):
        n = len(self._buffer)
        return n < self._max_buffered or (bool(self._idle) and self._waking <= n)

    def _place(self, task):
        """Append *task* to the buffer and wake or grow as dispatch() does (slow path)."""
        buf = self._buffer
        n = len(buf)
        buf.append(task)
        if self._waking <= n:
            if self._idle:
                self._wake(self._idle.pop())
            elif len(self._workers) < self._grow_limit:
                self._grow()

    def _refill(self):
        """Move overflowed tasks into the buffer while it has room; then let a blocked dispatch in."""
        buf = self._buffer
        overflow = self._overflow
        pop = self._overflow_pop
        cap = self._max_buffered
        while overflow and (len(buf) < cap or not buf):
            buf.append(pop())
        if self._room_waiters and len(buf) < cap:
            self._room_waiters[0].set()

    # -- lifecycle -------------------------------------------------------------

    def run(self):
        """See `IDispatcher.run`. Never switches; the workers start at the next switch."""
        if self._status is not _STOPPED:
            return
        self._run_callback = get_hub().loop.run_callback
        self._status = _RUNNING
        self._stopped.clear()
        self._grow_limit = self._max_workers
        self._at_max = False
        for _ in range(self._min_workers):
            self._spawn_worker()
        self._kick()
        prefix = "greenworks.%s" % self._name
        self._supervisors = [_greenlets.spawn(prefix + ".scaler", self._scale_down_loop, self._dispatched)]
        if self._task_timeout is not None:
            self._supervisors.append(_greenlets.spawn(prefix + ".watchdog", self._watchdog_loop))
        self._logger.info(
            "dispatcher %r: running with %d workers (min %d, max %d, buffer %d)",
            self._name,
            len(self._workers),
            self._min_workers,
            self._max_workers,
            self._max_buffered,
        )

    def _drained(self):
        busy = len(self._workers) - len(self._idle)
        quitter = self._quitter
        if quitter is not None and quitter in self._workers and quitter.state == _BUSY:
            busy -= 1
        return busy <= 0 and not self._buffer and not self._overflow and not self._room_waiters

    def quit(self, drain=False):
        """See `IDispatcher.quit`.

        Blocks until every worker has ended (a worker calling ``quit`` from
        inside a task is not waited for; it ends once its task returns). A
        second call while one is in progress waits for it; ``quit(False)``
        during a drain stops draining. Dispatches made while stopping are
        kept for the next ``run()``; dispatches made while draining run
        before ``quit`` returns, so a steady stream of them delays it. Draining
        a pool without workers starts one, even with ``max_workers=0``.
        """
        status = self._status
        if status is _STOPPED:
            return
        if status is not _RUNNING:
            if not drain and status is _DRAINING:
                self._status = _STOPPING
                self._changed.set()
            self._stopped.wait()
            return
        current = getcurrent()
        self._quitter = next((w for w in self._workers if w.greenlet is current), None)
        if drain:
            self._status = _DRAINING
            self._logger.info("dispatcher %r: draining", self._name)
            while self._status is _DRAINING and not self._drained():
                if not self._workers:
                    # Draining was asked for: even a pool resized to
                    # max_workers=0 gets one worker to do it.
                    self._grow_limit = max(self._grow_limit, 1)
                    self._grow()
                self._changed.clear()
                self._changed.wait()
        self._status = _STOPPING
        self._stop_workers()
        self._status = _STOPPED
        self._quitter = None
        self._stopped.set()
        self._logger.info(
            "dispatcher %r: stopped (%d buffered, %d overflowed kept)",
            self._name,
            len(self._buffer),
            len(self._overflow),
        )

    def _stop_workers(self):
        self._grow_limit = 0
        # Give the backlog fresh containers: the ending workers hold the old,
        # now empty ones, so they finish their task and leave, while tasks
        # dispatched from here on wait for the next run().
        backlog = self._buffer
        self._buffer = collections.deque(backlog)
        backlog.clear()
        old_overflow = self._overflow
        self._stack, self._overflow, self._overflow_pop = self._new_overflow(old_overflow)
        if self._policy != "reject":
            old_overflow.clear()
        self._retire(len(self._workers))
        current = getcurrent()
        ending = [w.greenlet for w in self._workers if w.greenlet is not current]
        gevent.joinall(ending)
        # Only now: the watchdog still guards the tasks that were in flight.
        for greenlet in self._supervisors:
            greenlet.kill()
        self._supervisors = []

    def resize(self, min_workers=None, max_workers=None):
        """See `IDispatcher.resize`. Never switches.

        :raises InvalidArgument: if a bound is not an int.
        """
        low = self._min_workers if min_workers is None else max(0, _check_count("min_workers", min_workers))
        high = self._max_workers if max_workers is None else _check_count("max_workers", max_workers)
        high = max(low, high)
        self._min_workers, self._max_workers = low, high
        if self._status is not _RUNNING and self._status is not _DRAINING:
            return
        self._grow_limit = high
        self._at_max = False
        live = self._live_count()
        if live > high:
            self._retire(live - high)
        elif live < low:
            for _ in range(min(low - live, high - len(self._workers))):
                self._spawn_worker()
        self._kick()
        self._logger.debug("dispatcher %r: resized to min %d, max %d", self._name, low, high)

    # -- introspection ---------------------------------------------------------

    def stats(self):
        """See `IDispatcher.stats`. ``executed`` counts finished tasks, failed or not."""
        workers = len(self._workers)
        idle = len(self._idle)
        return {
            "workers": workers,
            "busy": workers - idle,
            "idle": idle,
            "buffered": len(self._buffer),
            "overflowed": len(self._overflow),
            "dispatched": self._dispatched,
            "executed": self._retired_done + sum(w.done for w in self._workers),
            "failed": self._failed,
            "timed_out": self._timed_out,
            "rejected": self._rejected,
            "scale_ups": self._scale_ups,
            "scale_downs": self._scale_downs,
        }

    def snapshot(self):
        """See `IDispatcher.snapshot`."""
        snap = {"component": "dispatcher", "name": self._name, "status": self._status.name}
        snap.update(self.stats())
        snap["min_workers"] = self._min_workers
        snap["max_workers"] = self._max_workers
        snap["max_buffered"] = self._max_buffered
        return snap

    def __repr__(self):
        return "<greenworks.Dispatcher %r %s workers=%d buffered=%d overflowed=%d>" % (
            self._name,
            self._status.name,
            len(self._workers),
            len(self._buffer),
            len(self._overflow),
        )

    # -- mapping (see _mapping.py) --

    def map(self, fn, *iterables):
        """See `IMapping.map`: ``[fn(*args) for args in zip(*iterables)]`` in parallel, in order."""
        from greenworks import _mapping

        return _mapping.map(self, fn, *iterables)

    def imap(self, fn, *iterables, maxsize=None):
        """See `IMapping.imap`: an iterator of the results in input order."""
        from greenworks import _mapping

        return _mapping.imap(self, fn, *iterables, maxsize=maxsize)

    def imap_unordered(self, fn, *iterables, maxsize=None):
        """See `IMapping.imap_unordered`: an iterator of the results as they complete."""
        from greenworks import _mapping

        return _mapping.imap_unordered(self, fn, *iterables, maxsize=maxsize)
