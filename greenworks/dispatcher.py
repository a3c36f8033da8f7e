"""
Dispatcher: an elastic pool of worker greenlets fed from a bounded buffer.

::

    with Dispatcher(1000, 10, 100) as pool:     # buffer, min workers, max workers
        pool.dispatch(task)                     # True: buffered; False: buffer full
        handle = pool.submit(fetch, url)        # a TaskHandle (an AsyncResult) of fetch(url)
        print(handle.get())
    # leaving the block ran everything that was accepted, then stopped the workers

How it works, and why it is fast:

- The *buffer* is a deque of at most ``max_buffered`` tasks. A task that
  finds it full goes to the *overflow* (``overflow="stack"``: a LIFO
  `TaskStack`; ``"queue"``: FIFO; ``"reject"``: not kept) and ``dispatch``
  returns False. Whenever a worker takes a task from the buffer it refills
  the buffer from the overflow, so nothing is ever stranded there.
- A worker greenlet drains the buffer in a tight loop and parks only when the
  buffer is empty. Idle workers park in a `~greenworks._workers.WorkerSet`,
  each on its own waiter. ``dispatch`` does not wake one per task: the first
  task of a burst that no worker on its way will take schedules ONE hub
  callback, which, when it runs, wakes the most recently parked worker
  (LIFO keeps hot greenlets hot), lets it run until it blocks or parks, and
  repeats while buffered tasks outnumber the workers on their way. A burst
  of trivial tasks is thus drained by one worker with one switch, a burst of
  blocking tasks starts one worker per task at once, and a wake-up costs the
  same with 10 or 100,000 idle workers. With no parked worker left to take
  a task the pool grows instead. That step, hand out or grow, is
  :meth:`Dispatcher._wanted`, the one place every way of adding a task goes
  through.
- Growing doubles the pool (at least one worker, never above the maximum)
  and never touches running workers. A supervisor greenlet halves the pool,
  never below the minimum, after ``wait_between_scale_downs`` seconds in which
  nothing was dispatched and nothing waited; idle workers leave first, busy
  ones after their current task.
- ``task_timeout`` is enforced by a watchdog greenlet rather than a
  ``gevent.Timeout`` per task (which would cost more than moving the task):
  every ``max(task_timeout / 10, 0.01)`` seconds it looks at each busy worker,
  and interrupts one still running the task it ran at the previous look once
  that task has run ``task_timeout`` seconds since it was first seen. A task
  is therefore interrupted between ``task_timeout`` and ``task_timeout +
  max(task_timeout / 10, 0.01)`` seconds after it started.

Nothing accepted is lost silently: ``stop()`` drains by default; a stop
without draining keeps the backlog for the next ``start()`` and says how
many tasks wait (or, with ``cancel_pending=True``, resolves their handles
with `Canceled` at once); a task that finds the buffer full under
``overflow="reject"`` makes ``dispatch`` return False and its handle hold
``gevent.queue.Full``.

Differences from the original (gadget's dispatcher): ``quit(drain=True)``
runs every task (no "misses" heuristic), ``min_workers=0`` works, stopping
always stops every worker, a stopped pool can be started again, no task is
dropped on exit, growing does not stop running workers, and the overflow is
refilled into the buffer as room frees.
"""

import collections
import enum
import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import gevent
from gevent.event import Event
from gevent.hub import get_hub
from gevent.queue import Full
from zope.interface import implementer

from greenworks import _checks
from greenworks._component import Lifecycle, State
from greenworks._tasks import PLAIN_TASK_TYPES, RetryTask, TaskHandle, TaskStack, _check_task
from greenworks._workers import BUSY, WorkerSet
from greenworks.events import PoolScaled, TaskFailed, TaskRejected, TaskTimedOut
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IDispatcher

__all__ = [
    "DEFAULT_TASK_TIMEOUT",
    "DEFAULT_WAIT_BETWEEN_SCALE_DOWNS",
    "Dispatcher",
    "RetryTask",
    "Status",
    "TaskHandle",
    "TaskStack",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Seconds a task may run before the watchdog interrupts it.
DEFAULT_TASK_TIMEOUT = 10.0
#: Seconds without dispatches before the pool halves.
DEFAULT_WAIT_BETWEEN_SCALE_DOWNS = 300.0
#: A summary of the overflow is logged whenever its size hits a multiple of this.
OVERFLOW_LOG_EVERY = 20
#: The fewest seconds between two watchdog looks, so a tiny timeout cannot spin the hub.
MIN_WATCHDOG_PERIOD = 0.01
#: The fewest seconds between two "pool at maximum" warnings.
PINNED_WARNING_INTERVAL = 60.0

_OVERFLOW_POLICIES = ("stack", "queue", "reject")


class Status(enum.IntEnum):
    """The seed's state numbers, read through the deprecated ``Dispatcher.status``; use ``state``."""

    STOPPED = 0
    STOPPING = 1
    RUNNING = 2
    DRAINING = 3


_STATUS = {
    State.NEW: Status.STOPPED,
    State.STOPPED: Status.STOPPED,
    State.STOPPING: Status.STOPPING,
    State.RUNNING: Status.RUNNING,
    State.DRAINING: Status.DRAINING,
}


class _TaskTimeout(gevent.Timeout):  # type: ignore[misc]  # gevent is untyped: Timeout is Any
    """The ``gevent.Timeout`` the watchdog throws into a worker whose task overran."""

    def __init__(self, seconds: float) -> None:
        # No timer of its own: the watchdog decides when it fires.
        super().__init__(None)
        self.seconds = seconds

    def __str__(self) -> str:
        return "task ran longer than %s seconds" % (self.seconds,)


@implementer(IDispatcher)
class Dispatcher:
    """Default implementation of `IDispatcher`.

    :param int max_buffered: the buffer's capacity (``>= 0``). With 0 a task
        is buffered only when an idle worker is there to take it.
    :param int min_workers: workers kept while running (``>= 0``).
    :param int max_workers: the most workers (``>= 1`` and ``>= min_workers``).
    :keyword task_timeout: seconds a task may run (``None``: no limit).
    :keyword float wait_between_scale_downs: seconds without dispatches before halving.
    :keyword str overflow: ``"stack"`` (LIFO), ``"queue"`` (FIFO) or ``"reject"``.
    :keyword str name: names the greenlets (``greenworks.<name>[3]``) and the snapshot.
    :keyword clock: the `IClock` for the watchdog, the scale-down supervisor and ``stop(timeout)``.
    :keyword logger: a ``logging.Logger`` (default ``greenworks.dispatcher``).
    :raises InvalidArgument: naming the argument, for a bad count, bound,
        timeout, policy or name: a pool that could never run a task is
        refused here, not discovered later.
    """

    def __init__(
        self,
        max_buffered: int,
        min_workers: int,
        max_workers: int,
        *,
        task_timeout: float | None = DEFAULT_TASK_TIMEOUT,
        wait_between_scale_downs: float = DEFAULT_WAIT_BETWEEN_SCALE_DOWNS,
        overflow: str = "stack",
        name: str = "dispatcher",
        clock: Any = None,
        logger: Any = None,
    ) -> None:
        self._max_buffered = _checks.count("max_buffered", max_buffered)
        self._min_workers, self._max_workers = _check_bounds(min_workers, max_workers)
        if overflow not in _OVERFLOW_POLICIES:
            raise invalid_argument("overflow", overflow, 'one of "stack", "queue", "reject"')
        self._task_timeout = _checks.seconds("task_timeout", task_timeout, none=True, positive=True)
        self._wait_between_scale_downs = _checks.seconds(
            "wait_between_scale_downs", wait_between_scale_downs, positive=True
        )
        self._life = life = Lifecycle(self, "dispatcher", name, clock, logger, __name__)
        self._name = life.name
        self._clock = life.clock
        self._logger = life.logger
        self._policy = overflow
        self._buffer: collections.deque[Any] = collections.deque()
        self._stack, self._overflow, self._overflow_pop = self._new_overflow(())
        # The Events of blocked dispatches, first in line first; _blocked counts
        # those dispatches (one woken is off the line but still blocked).
        self._room_waiters: collections.deque[Event] = collections.deque()
        self._blocked = 0
        self._pool = WorkerSet(
            life, self._work, "greenworks.%s[%%d]" % life.name, on_exit=self._worker_exited
        )
        # Growth is allowed up to this many workers; 0 while not running.
        self._grow_limit = 0
        # True while no dispatch can add anything: the pool is at its maximum and
        # every parked worker is busy or spoken for by a pending hand-out. The hot
        # path then skips the wake step; a worker parking, a hand-out leaving
        # parked workers, resize() and start() clear it.
        self._at_max = False
        # True while a _hand_out callback is scheduled and has not run yet.
        self._handout_pending = False
        self._supervisors: list[Any] = []
        self._changed = Event()
        self._stopping = False
        self._last_clean = True
        self._quitter: Any = None
        self._pinned_logged_at: float | None = None
        self._idle_warned = False
        # Counters. Nothing on the hot path counts dispatches: their number is
        # derived from where every accepted task is (see _dispatched_count);
        # these count the tasks that left the books other than by running.
        self._discarded = 0  # cleared by a stop with cancel_pending, or a blocked dispatch killed
        self._killed_in_task = 0  # taken by a worker that was killed while running it
        self._retired_done = 0
        self._failed = 0
        self._timed_out = 0
        self._rejected = 0
        self._cancelled = 0
        self._scale_ups = 0
        self._scale_downs = 0

    def _new_overflow(self, items: Iterable[Any]) -> tuple[TaskStack | None, Any, Callable[[], Any] | None]:
        """The overflow for this policy: (the TaskStack or None, its container, the container's pop)."""
        if self._policy == "stack":
            stack = TaskStack(items)
            return stack, stack._items, stack._items.pop
        if self._policy == "queue":
            queue = collections.deque(items)
            return None, queue, queue.popleft
        return None, (), None

    # -- properties ------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def state(self) -> State:
        return self._life.state

    @property
    def status(self) -> Status:
        """Deprecated: the seed's numbered `Status`; read :attr:`state` instead."""
        return _STATUS[self._life.state]

    @property
    def worker_count(self) -> int:
        return len(self._pool)

    @property
    def min_workers(self) -> int:
        return self._min_workers

    @property
    def max_workers(self) -> int:
        return self._max_workers

    @property
    def max_buffered(self) -> int:
        return self._max_buffered

    @property
    def task_timeout(self) -> float | None:
        """Seconds a task may run before it is interrupted, or None (read-only)."""
        return self._task_timeout

    @property
    def overflow(self) -> TaskStack | None:
        """The overflow `TaskStack` (``overflow="stack"`` only; else None)."""
        return self._stack

    def free_count(self) -> int:
        """Tasks that could be accepted now without overflowing.

        The free buffer room, or, if more, the parked and waking workers not
        yet spoken for by a buffered task.
        """
        pool = self._pool
        return max(0, max(self._max_buffered, pool.waking + len(pool.idle)) - len(self._buffer))

    def full(self) -> bool:
        """Whether a ``dispatch`` now would overflow (or be rejected)."""
        return not self._has_room()

    # -- dispatching -----------------------------------------------------------

    def dispatch(self, task: Any, block: bool = False, timeout: float | None = None) -> bool:
        """See `IDispatcher.dispatch`. Never switches unless *block* is true.

        :raises InvalidArgument: if *task* is neither callable nor an
            `IDispatchTask`, or *timeout* is not None nor a number of seconds.
        """
        if type(task) not in PLAIN_TASK_TYPES:
            task = _check_task(task)
        if timeout is not None:
            timeout = _checks.seconds("timeout", timeout, none=True, negative=True)
        buf = self._buffer
        n = len(buf)
        if n < self._max_buffered or n < self._pool.waking + len(self._pool.idle):
            buf.append(task)
            # Task n is taken by a worker already on its way unless n >= waking.
            if not self._at_max and n >= self._pool.waking:
                self._wanted(n)
            return True
        return self._overflowed(task, block, timeout)

    def submit(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> TaskHandle[_T]:
        """See `IDispatcher.submit`. Never switches.

        The handle gets ``fn``'s return value or exception (including the
        watchdog's ``gevent.Timeout``). With ``overflow="reject"`` and a full
        buffer it holds a ``gevent.queue.Full`` at once. Failures are counted,
        and logged only at DEBUG, since the caller receives them.

        :raises InvalidArgument: if *fn* is not callable.
        """
        if not callable(fn):
            raise invalid_argument("fn", fn, "a callable")
        if kwargs:
            # Rare: the handle calls fn(*args) alone (no empty ** on the common path).
            fn = functools.partial(fn, **kwargs)
        # The handle is built here, not by a helper: a call would cost a tenth of submit().
        task: TaskHandle[_T] = TaskHandle()
        task._fn = fn
        task._args = args
        # dispatch()'s fast path, inlined: the call would cost a fifth of submit().
        buf = self._buffer
        n = len(buf)
        if n < self._max_buffered or n < self._pool.waking + len(self._pool.idle):
            buf.append(task)
            if not self._at_max and n >= self._pool.waking:
                self._wanted(n)
        elif not self._overflowed(task, False, None) and self._overflow_pop is None:
            task.set_exception(Full("dispatcher %r: buffer full, task rejected" % self._name))
        return task

    def _wanted(self, n: int) -> None:
        """Task *n* of the buffer waits beyond the workers already on their way: hand it out, or grow.

        The single wake-or-grow step behind every way a task arrives. While
        parked workers are left to take it, one hub callback per burst hands
        the buffered tasks out (:meth:`_hand_out`); with none left it grows
        the pool. Never switches.
        """
        pool = self._pool
        if n < pool.waking + len(pool.idle):
            if not self._handout_pending:
                self._handout_pending = True
                get_hub().loop.run_callback(self._hand_out)
                if len(pool) >= self._grow_limit and self._life.running:
                    # At the maximum, the pending hand-out is all a later task
                    # can get: spare later dispatches this call until it ran.
                    self._at_max = True
        elif not self._at_max:
            if len(pool) < self._grow_limit:
                self._grow()
            elif self._life.running:
                # Spares later dispatches this call until a worker parks or the bounds change.
                self._at_max = True
            elif not self._idle_warned and not self._stopping:
                self._idle_warned = True
                self._logger.warning(
                    "dispatcher %r is %s: accepted tasks wait for start()", self._name, self._life.state.value
                )

    def _hand_out(self) -> None:
        """Hub callback: wake parked workers one at a time while buffered tasks outnumber those on their way.

        Each woken worker runs at once, until it blocks or parks again, so a
        burst of trivial tasks is drained by the first worker (no wasted
        switches into workers that would find the buffer empty), while a
        burst of blocking tasks starts one worker per task before this
        callback returns (eager start-up for I/O).
        """
        try:
            self._pool.hand_out(self._buffer)
        finally:
            self._handout_pending = False
            if self._pool.idle:
                self._at_max = False

    def _overflowed(self, task: Any, block: bool, timeout: float | None) -> bool:
        if block and self._wait_for_room(task, timeout):
            return True
        if self._overflow_pop is None:
            self._rejected += 1
            self._life.emit(TaskRejected, task)
            return False
        overflow = self._overflow
        overflow.append(task)
        size = len(overflow)
        if size == 1:
            self._logger.warning(
                "dispatcher %r: buffer full (%d), overflowing (%d workers, %d busy)",
                self._name,
                self._max_buffered,
                len(self._pool),
                len(self._pool) - len(self._pool.idle),
            )
        elif size % OVERFLOW_LOG_EVERY == 0:
            self._logger.debug("dispatcher %r: %d tasks in overflow", self._name, size)
        # Overflowing means every parked worker is spoken for: grow.
        if len(self._pool) < self._grow_limit:
            self._grow()
        return False

    def _wait_for_room(self, task: Any, timeout: float | None) -> bool:
        """Block until the buffer has room for *task* and place it; False on timeout.

        Blocked dispatches wait in line, each on its own Event. Whoever frees
        room (a worker taking a task, a worker parking) takes the first in
        line off the list as it sets its Event, so the tasks that follow do
        not signal it again; one woken that finds the room gone already
        goes back to the head of the line.
        """
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        room = Event()
        waiters = self._room_waiters
        waiters.append(room)
        self._blocked += 1
        placed = timed_out = False
        try:
            while True:
                if deadline is None:
                    room.wait()
                else:
                    remaining = deadline - clock.monotonic()
                    if remaining <= 0 or not clock.wait(room, remaining):
                        timed_out = True
                        return False
                # Set: taken off the line by whoever freed room.
                room.clear()
                if self._has_room():
                    placed = True
                    n = len(self._buffer)
                    self._buffer.append(task)
                    if n >= self._pool.waking:
                        self._wanted(n)
                    if waiters and self._has_room():
                        waiters.popleft().set()
                    return True
                waiters.appendleft(room)
        finally:
            self._blocked -= 1
            if not placed:
                if not timed_out:
                    # Killed while blocked: the task is dropped, still counted as dispatched.
                    self._discarded += 1
                if room.is_set():
                    # Woken, then killed (or timed out) before using the room: pass it on.
                    if waiters and self._has_room():
                        waiters.popleft().set()
                else:
                    waiters.remove(room)

    def _has_room(self) -> bool:
        n = len(self._buffer)
        return n < self._max_buffered or n < self._pool.waking + len(self._pool.idle)

    def _refill(self) -> None:
        """Move overflowed tasks into the buffer while it has room; then let a blocked dispatch in."""
        buf = self._buffer
        overflow = self._overflow
        pop = self._overflow_pop
        cap = self._max_buffered
        while overflow and (len(buf) < cap or not buf):
            assert pop is not None  # only "reject" has no pop, and its overflow is always empty
            buf.append(pop())
        if self._room_waiters and len(buf) < cap:
            self._room_waiters.popleft().set()

    # -- workers ---------------------------------------------------------------

    def _grow(self) -> None:
        """Double the pool (at least +1), never above the current growth limit."""
        pool = self._pool
        before = len(pool)
        target = min(self._grow_limit, max(1, 2 * before))
        if target <= before:
            return
        for _ in range(target - before):
            pool.spawn(self._buffer, self._overflow)
        self._scale_ups += 1
        self._logger.debug("dispatcher %r: scaled up from %d to %d workers", self._name, before, target)
        self._life.emit(PoolScaled, before, target, "backlog")

    def _kick(self) -> None:
        """Grow when work waits beyond the workers on their way and the parked ones."""
        pool = self._pool
        if (
            len(self._buffer) + len(self._overflow) > pool.waking + len(pool.idle)
            and len(pool) < self._grow_limit
        ):
            self._grow()

    def _work(self, worker: Any, buf: Any, overflow: Any) -> None:
        # The worker got this run's containers when it was spawned, not when it
        # starts: one spawned just before a stop must not take tasks kept for
        # the next run.
        pool = self._pool
        waiters = self._room_waiters
        pool.started(worker)
        self._kick()
        while True:
            while buf:
                # buf.popleft(), not a bound method kept in a local: one less object per worker.
                task = buf.popleft()
                if overflow or waiters:
                    self._refill()
                try:
                    task()
                except Exception as exc:
                    self._task_failed(task, exc)
                except gevent.Timeout as exc:
                    self._task_timed_out(worker, task, exc)
                except BaseException:
                    # Killed (GreenletExit) while running it: still a dispatched task.
                    self._killed_in_task += 1
                    raise
                worker.done += 1
            if overflow:
                self._refill()
                continue
            if worker.retire:
                return
            self._at_max = False
            if waiters:
                # A blocked dispatch may hand its task to this idle worker.
                waiters.popleft().set()
            if self._life.state is not State.RUNNING:
                self._changed.set()
            pool.park(worker)

    def _task_failed(self, task: Any, exc: BaseException) -> None:
        self._failed += 1
        if type(task) is TaskHandle:
            self._logger.debug("dispatcher %r: submitted %r raised", self._name, task, exc_info=exc)
        else:
            self._logger.error("dispatcher %r: task %r raised", self._name, task, exc_info=exc)
        self._life.emit(TaskFailed, task, exc)

    def _task_timed_out(self, worker: Any, task: Any, exc: BaseException) -> None:
        if not isinstance(exc, _TaskTimeout):
            # The task's own gevent.Timeout escaped it: an ordinary failure.
            self._task_failed(task, exc)
            return
        self._timed_out += 1
        self._logger.warning(
            "dispatcher %r: task %r interrupted after running more than %ss in %s",
            self._name,
            task,
            self._task_timeout,
            worker.greenlet.name,
        )
        self._life.emit(TaskTimedOut, task, self._task_timeout)

    def _worker_exited(self, worker: Any) -> None:
        self._retired_done += worker.done
        worker.done = 0
        pool = self._pool
        if self._life.state is State.RUNNING or self._life.state is State.DRAINING:
            if not worker.retire:
                self._logger.warning(
                    "dispatcher %r: worker %s ended unexpectedly", self._name, worker.greenlet.name
                )
            missing = min(self._min_workers - pool.live(), self._max_workers - len(pool))
            for _ in range(missing):
                pool.spawn(self._buffer, self._overflow)
            self._kick()
        self._changed.set()

    def _check_pinned(self) -> None:
        """Warn (at most once a minute) when every worker is busy at the maximum and work waits."""
        pool = self._pool
        waiting = len(self._buffer) + len(self._overflow)
        if not waiting or pool.idle or pool.waking or len(pool) < self._max_workers:
            return
        now = self._clock.monotonic()
        last = self._pinned_logged_at
        if last is None or now - last >= PINNED_WARNING_INTERVAL:
            self._pinned_logged_at = now
            self._logger.warning(
                "dispatcher %r: all %d workers busy at max_workers with %d tasks waiting",
                self._name,
                len(pool),
                waiting,
            )

    def _scale_down_loop(self, seen: int) -> None:
        clock = self._clock
        pool = self._pool
        while True:
            clock.sleep(self._wait_between_scale_downs)
            now_seen = self._dispatched_count()
            quiet = now_seen == seen
            seen = now_seen
            self._check_pinned()
            if not quiet or self._buffer or self._overflow or self._blocked:
                continue
            live = pool.live()
            target = max(self._min_workers, live // 2)
            if target < live:
                pool.retire(live - target)
                self._scale_downs += 1
                self._logger.info(
                    "dispatcher %r: scaled down from %d to %d workers", self._name, live, target
                )
                self._life.emit(PoolScaled, live, target, "idle")

    def _watchdog_loop(self) -> None:
        clock = self._clock
        pool = self._pool
        timeout = self._task_timeout
        assert timeout is not None  # start() runs the watchdog only with a task_timeout
        period = max(timeout / 10.0, MIN_WATCHDOG_PERIOD)
        # worker -> [done count at the first look, monotonic time of that look, done count thrown at]
        seen: dict[Any, list[Any]] = {}
        while True:
            clock.sleep(period)
            now = clock.monotonic()
            self._check_pinned()
            for worker in list(pool.workers):
                if worker.state != BUSY:
                    seen.pop(worker, None)
                    continue
                done = worker.done
                record = seen.get(worker)
                if record is None or record[0] != done:
                    seen[worker] = [done, now, record[2] if record else -1]
                elif now - record[1] >= timeout and record[2] != done:
                    record[2] = done
                    pool.interrupt(worker, done, _TaskTimeout(timeout))
            for worker in [w for w in seen if w not in pool.workers]:
                del seen[worker]

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> "Dispatcher":
        """See `IComponent.start`: start ``min_workers`` workers and run the backlog.

        A no-op while running or stopping. Never switches; the workers start
        at the next switch.
        """
        life = self._life
        if life.state is not State.NEW and life.state is not State.STOPPED:
            return self
        self._pool.open()
        self._grow_limit = self._max_workers
        self._at_max = False
        self._idle_warned = False
        life.started()
        for _ in range(self._min_workers):
            self._pool.spawn(self._buffer, self._overflow)
        self._kick()
        prefix = "greenworks.%s" % self._name
        self._supervisors = [life.spawn(prefix + ".scaler", self._scale_down_loop, self._dispatched_count())]
        if self._task_timeout is not None:
            self._supervisors.append(life.spawn(prefix + ".watchdog", self._watchdog_loop))
        self._logger.info(
            "dispatcher %r: running with %d workers (min %d, max %d, buffer %d)",
            self._name,
            len(self._pool),
            self._min_workers,
            self._max_workers,
            self._max_buffered,
        )
        return self

    def run(self) -> None:
        """The seed's verb for :meth:`start` (which also returns the Dispatcher)."""
        self.start()

    def stop(self, timeout: float | None = None, *, drain: bool = True, cancel_pending: bool = False) -> bool:
        """See `IComponent.stop`: run what was accepted (by default), then stop every worker.

        Blocks. With *drain* every buffered and overflowed task runs first,
        including ones dispatched while draining; without it only the tasks
        in flight finish and the backlog is kept for the next ``start()``
        (its size is logged at WARNING), or, with *cancel_pending*, every
        handle of a task that did not run resolves at once with `Canceled`
        (plain dispatched tasks are dropped and counted). What still runs
        *timeout* seconds after the call (on the clock) is killed: the handles
        of killed tasks hold `Canceled`. A stop called from one of this
        pool's own tasks does not wait for that task (it ends once the task
        returns). A concurrent second call waits for the first; a second
        call without *drain* during a drain stops draining.

        :return bool: True if everything ended in time (and the drain, if
            asked for, completed); False if workers had to be killed.
        """
        return self._stop(timeout, drain, cancel_pending)[0]

    def quit(self, drain: bool = False, cancel_pending: bool = False) -> int:
        """The seed's verb: ``stop(None, drain=drain, cancel_pending=cancel_pending)``.

        :return int: the number of tasks left queued for the next ``start()``
            (0 after a drain or with *cancel_pending*).
        """
        return self._stop(None, drain, cancel_pending)[1]

    def __enter__(self) -> "Dispatcher":
        return self.start()

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        # A clean exit runs what the block accepted; an exception cancels it.
        failed = exc_type is not None
        self.stop(drain=not failed, cancel_pending=failed)

    def _drained(self) -> bool:
        pool = self._pool
        busy = len(pool) - len(pool.idle)
        quitter = self._quitter
        if quitter is not None and quitter in pool.workers and quitter.state == BUSY:
            busy -= 1
        return busy <= 0 and not self._buffer and not self._overflow and not self._blocked

    def _stop(self, timeout: Any, drain: bool, cancel_pending: bool) -> tuple[bool, int]:
        timeout = _checks.seconds("timeout", timeout, none=True)
        life = self._life
        if life.state is State.NEW or life.state is State.STOPPED:
            return True, self._settle_backlog(cancel_pending)
        if self._stopping:
            if not drain and life.state is State.DRAINING:
                life.state = State.STOPPING
                self._changed.set()
            life.wait_stopped()
            return self._last_clean, len(self._buffer) + len(self._overflow)
        self._stopping = True
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        self._quitter = self._pool.current()
        drained = True
        if drain:
            life.state = State.DRAINING
            self._logger.info("dispatcher %r: draining", self._name)
            while life.state is State.DRAINING and not self._drained():
                remaining = None if deadline is None else deadline - clock.monotonic()
                if remaining is not None and remaining <= 0:
                    drained = False
                    break
                self._changed.clear()
                clock.wait(self._changed, remaining)
            drained = drained and self._drained()
        life.state = State.STOPPING
        self._pool.close()
        clean = self._stop_workers(deadline) and drained
        left = self._settle_backlog(cancel_pending)
        self._quitter = None
        self._stopping = False
        self._last_clean = clean
        self._logger.info("dispatcher %r: stopped (%d tasks kept for the next start)", self._name, left)
        life.stopped(clean)
        return clean, left

    def _stop_workers(self, deadline: float | None) -> bool:
        self._grow_limit = 0
        # Give the backlog fresh containers: the ending workers hold the old,
        # now empty ones, so they finish their task and leave, while tasks
        # dispatched from here on wait for the next run.
        backlog = self._buffer
        self._buffer = collections.deque(backlog)
        backlog.clear()
        old_overflow = self._overflow
        self._stack, self._overflow, self._overflow_pop = self._new_overflow(old_overflow)
        if self._policy != "reject":
            old_overflow.clear()
        pool = self._pool
        pool.retire(len(pool))
        remaining = None if deadline is None else max(0.0, deadline - self._clock.monotonic())
        quitter = self._quitter
        clean = pool.finish(remaining, exclude=None if quitter is None else quitter.greenlet)
        # Only now: the watchdog still guards the tasks that were in flight.
        for greenlet in self._supervisors:
            greenlet.kill()
        self._supervisors = []
        return clean

    def _settle_backlog(self, cancel_pending: bool) -> int:
        """Cancel the backlog (with *cancel_pending*) or report it; return how many tasks stay queued."""
        left = len(self._buffer) + len(self._overflow)
        if not left:
            return 0
        if not cancel_pending:
            self._logger.warning(
                "dispatcher %r: %d accepted task(s) stay queued until the next start()", self._name, left
            )
            return left
        tasks = list(self._buffer) + list(self._overflow)
        self._discarded += len(tasks)
        self._buffer.clear()
        if self._policy != "reject":
            self._overflow.clear()
        dropped = 0
        for task in tasks:
            if type(task) is TaskHandle:
                if task.cancel():
                    self._cancelled += 1
            else:
                dropped += 1
                self._cancelled += 1
        self._logger.warning(
            "dispatcher %r: cancelled %d pending task(s) (%d plain dispatched tasks dropped)",
            self._name,
            len(tasks),
            dropped,
        )
        return 0

    def resize(self, min_workers: int | None = None, max_workers: int | None = None) -> None:
        """See `IDispatcher.resize`. Never switches.

        :raises InvalidArgument: for bounds the constructor would refuse
            (nothing is changed then).
        """
        low = self._min_workers if min_workers is None else min_workers
        high = self._max_workers if max_workers is None else max_workers
        low, high = _check_bounds(low, high)
        before = self._pool.live()
        self._min_workers, self._max_workers = low, high
        if not self._life.running:
            return
        pool = self._pool
        self._grow_limit = high
        self._at_max = False
        live = pool.live()
        if live > high:
            pool.retire(live - high)
        elif live < low:
            for _ in range(min(low - live, high - len(pool))):
                pool.spawn(self._buffer, self._overflow)
        self._kick()
        self._logger.debug("dispatcher %r: resized to min %d, max %d", self._name, low, high)
        after = pool.live()
        if after != before:
            self._life.emit(PoolScaled, before, after, "resize")

    # -- introspection ---------------------------------------------------------

    def _dispatched_count(self) -> int:
        """How many tasks ``dispatch``/``submit`` were given (refused arguments aside). Never switches.

        Derived rather than counted per call (that would cost the hot path a
        tenth of its time): every such task is finished (``done``), running
        (its worker busy and not parked), buffered, overflowed, rejected,
        blocked in a dispatch, or was discarded or killed.
        """
        pool = self._pool
        done = running = 0
        for worker in pool.workers:
            done += worker.done
            if worker.state == BUSY and not worker.parked:
                running += 1
        return (
            self._retired_done
            + done
            + running
            + len(self._buffer)
            + len(self._overflow)
            + self._rejected
            + self._blocked
            + self._discarded
            + self._killed_in_task
        )

    def stats(self) -> dict[str, int]:
        """See `IDispatcher.stats`. ``executed`` counts finished tasks, failed or not."""
        pool = self._pool
        workers = len(pool)
        idle = len(pool.idle)
        return {
            "workers": workers,
            "busy": workers - idle,
            "idle": idle,
            "buffered": len(self._buffer),
            "overflowed": len(self._overflow),
            "dispatched": self._dispatched_count(),
            "executed": self._retired_done + sum(w.done for w in pool.workers),
            "failed": self._failed,
            "timed_out": self._timed_out,
            "rejected": self._rejected,
            "cancelled": self._cancelled,
            "scale_ups": self._scale_ups,
            "scale_downs": self._scale_downs,
        }

    def snapshot(self) -> dict[str, Any]:
        """See `IDispatcher.snapshot`."""
        snap = self._life.header()
        snap["status"] = self.status.name
        snap.update(self.stats())
        snap["min_workers"] = self._min_workers
        snap["max_workers"] = self._max_workers
        snap["max_buffered"] = self._max_buffered
        snap["task_timeout"] = self._task_timeout
        return snap

    def __repr__(self) -> str:
        return "<greenworks.Dispatcher %r %s workers=%d buffered=%d overflowed=%d>" % (
            self._name,
            self._life.state.value,
            len(self._pool),
            len(self._buffer),
            len(self._overflow),
        )

    # -- mapping (see _mapping.py) --

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Any]:
        """See `IMapping.map`: ``[fn(*args) for args in zip(*iterables)]`` in parallel, in order."""
        from greenworks import _mapping

        return _mapping.map(self, fn, *iterables)

    def imap(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], maxsize: int | None = None
    ) -> Iterator[Any]:
        """See `IMapping.imap`: an iterator of the results in input order."""
        from greenworks import _mapping

        return _mapping.imap(self, fn, *iterables, maxsize=maxsize)

    def imap_unordered(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], maxsize: int | None = None
    ) -> Iterator[Any]:
        """See `IMapping.imap_unordered`: an iterator of the results as they complete."""
        from greenworks import _mapping

        return _mapping.imap_unordered(self, fn, *iterables, maxsize=maxsize)


def _check_bounds(min_workers: Any, max_workers: Any) -> tuple[int, int]:
    """Return ``(min_workers, max_workers)`` if a pool with them can run a task.

    :raises InvalidArgument: a bound is not an int, ``min_workers < 0``,
        ``max_workers < 1``, or ``min_workers > max_workers``.
    """
    low = _checks.count("min_workers", min_workers)
    high = _checks.count("max_workers", max_workers, minimum=1)
    if low > high:
        raise invalid_argument("min_workers", min_workers, "an int <= max_workers (%d)" % high)
    return low, high
