"""
The worker side of the Dispatcher: worker greenlets, their idle list, growth,
retirement, the task-timeout watchdog and the scale-down supervisor.

`_WorkerPool` is a base class of :class:`greenworks.dispatcher.Dispatcher`
and not usable alone: the Dispatcher's constructor sets every attribute it
reads. The split is by concept: ``dispatcher.py`` holds what callers touch
(buffer, overflow, dispatch, run/quit/resize, stats), this module what the
workers do. See ``dispatcher.py`` for the design and its costs.
"""

import enum

import gevent
from gevent.hub import Waiter
from greenlet import getcurrent

from greenworks import _greenlets
from greenworks._dispatcher_tasks import _Call

#: The fewest seconds between two watchdog looks, so a tiny timeout cannot spin the hub.
MIN_WATCHDOG_PERIOD = 0.01
#: The fewest seconds between two "pool at maximum" warnings.
PINNED_WARNING_INTERVAL = 60.0


class Status(enum.IntEnum):
    """The state of a `Dispatcher`; the values are Go's."""

    __module__ = "greenworks.dispatcher"

    STOPPED = 0
    STOPPING = 1
    RUNNING = 2
    DRAINING = 3


_STOPPED = Status.STOPPED
_STOPPING = Status.STOPPING
_RUNNING = Status.RUNNING
_DRAINING = Status.DRAINING


# Worker states. A worker is in the idle list exactly when it is _IDLE;
# _WAKING means "taken off the idle list (or just spawned), not yet running".
_BUSY = 0
_IDLE = 1
_WAKING = 2


class _Worker:
    """The pool's record of one worker greenlet."""

    __slots__ = (
        "done",
        "greenlet",
        "index",
        "retire",
        "seen_done",
        "seen_since",
        "state",
        "thrown",
        "waiter",
    )

    def __init__(self, index):
        self.index = index
        self.greenlet = None
        self.waiter = Waiter()
        self.state = _WAKING
        self.retire = False
        #: Tasks this worker finished, whatever their outcome.
        self.done = 0
        # Watchdog bookkeeping: ``done`` at its last look and when first seen.
        self.seen_done = -1
        self.seen_since = 0.0
        self.thrown = -1


class _TaskTimeout(gevent.Timeout):
    """The ``gevent.Timeout`` the watchdog throws into a worker whose task overran."""

    def __init__(self, seconds):
        # No timer of its own: the watchdog decides when it fires.
        super().__init__(None)
        self.seconds = seconds

    def __str__(self):
        return "task ran longer than %s seconds" % (self.seconds,)


class _WorkerPool:
    """The workers' half of the Dispatcher (a base class; see the module docstring)."""

    __slots__ = ()

    def _wake(self, worker):
        worker.state = _WAKING
        self._waking += 1
        self._run_callback(worker.waiter.switch, None)

    def _spawn_worker(self):
        index = self._next_index
        self._next_index += 1
        worker = _Worker(index)
        self._workers[worker] = None
        self._waking += 1
        # The worker gets this run's containers now, not when it starts: one
        # spawned just before quit() must not take tasks kept for the next run.
        worker.greenlet = _greenlets.spawn(
            "greenworks.%s[%d]" % (self._name, index), self._work, worker, self._buffer, self._overflow
        )
        return worker

    def _grow(self):
        """Double the pool (at least +1), never above the current growth limit."""
        before = len(self._workers)
        target = min(self._grow_limit, max(1, 2 * before))
        if target <= before:
            return
        for _ in range(target - before):
            self._spawn_worker()
        self._scale_ups += 1
        self._logger.debug("dispatcher %r: scaled up from %d to %d workers", self._name, before, target)

    def _no_idle_worker(self):
        """A task waits and no worker is idle: grow, or note that growing is pointless.

        ``_at_max`` spares later dispatches this call until a worker parks or
        the bounds change.
        """
        if len(self._workers) < self._grow_limit:
            self._grow()
        else:
            self._at_max = True

    def _check_pinned(self):
        """Warn (at most once a minute) when every worker is busy at the maximum and work waits."""
        waiting = len(self._buffer) + len(self._overflow)
        if not waiting or self._idle or self._waking or len(self._workers) < self._max_workers:
            return
        now = self._clock.monotonic()
        last = self._pinned_logged_at
        if last is None or now - last >= PINNED_WARNING_INTERVAL:
            self._pinned_logged_at = now
            self._logger.warning(
                "dispatcher %r: all %d workers busy at max_workers with %d tasks waiting",
                self._name,
                len(self._workers),
                waiting,
            )

    def _kick(self):
        """Grow when work waits beyond the workers on their way and nobody is idle."""
        if (
            not self._idle
            and len(self._buffer) + len(self._overflow) > self._waking
            and len(self._workers) < self._grow_limit
        ):
            self._grow()

    def _work(self, worker, buf, overflow):
        popleft = buf.popleft
        waiters = self._room_waiters
        park = worker.waiter.get
        try:
            self._waking -= 1
            worker.state = _BUSY
            self._kick()
            while True:
                while buf:
                    task = popleft()
                    if overflow or waiters:
                        self._refill()
                    try:
                        task()
                    except Exception as exc:
                        self._task_failed(task, exc)
                    except gevent.Timeout as exc:
                        self._task_timed_out(worker, task, exc)
                    worker.done += 1
                if overflow:
                    self._refill()
                    continue
                if worker.retire:
                    return
                worker.state = _IDLE
                self._idle.append(worker)
                self._at_max = False
                if waiters:
                    # A blocked dispatch may hand its task to this idle worker.
                    waiters[0].set()
                if self._status is not _RUNNING:
                    self._changed.set()
                park()
                if worker.state == _WAKING:
                    self._waking -= 1
                    worker.state = _BUSY
        finally:
            self._worker_exited(worker)

    def _task_failed(self, task, exc):
        self._failed += 1
        if type(task) is _Call:
            self._logger.debug("dispatcher %r: submitted %r raised", self._name, task, exc_info=exc)
        else:
            self._logger.error("dispatcher %r: task %r raised", self._name, task, exc_info=exc)

    def _task_timed_out(self, worker, task, exc):
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

    def _worker_exited(self, worker):
        self._workers.pop(worker, None)
        self._retired_done += worker.done
        worker.done = 0
        if worker.state == _IDLE:
            try:
                self._idle.remove(worker)
            except ValueError:
                pass
        elif worker.state == _WAKING:
            self._waking -= 1
        worker.state = _BUSY
        if self._status is _RUNNING:
            if not worker.retire:
                self._logger.warning(
                    "dispatcher %r: worker %s ended unexpectedly", self._name, worker.greenlet.name
                )
            missing = min(self._min_workers - self._live_count(), self._max_workers - len(self._workers))
            for _ in range(missing):
                self._spawn_worker()
            self._kick()
        self._changed.set()

    def _retire(self, count):
        """Ask *count* workers to leave: idle ones at once, busy ones after their task."""
        retired = 0
        while retired < count and self._idle:
            worker = self._idle.pop(0)
            worker.retire = True
            worker.state = _BUSY
            self._run_callback(worker.waiter.switch, None)
            retired += 1
        if retired < count:
            for worker in self._workers:
                if retired >= count:
                    break
                if not worker.retire:
                    worker.retire = True
                    retired += 1
        return retired

    def _live_count(self):
        return sum(1 for worker in self._workers if not worker.retire)

    def _scale_down_loop(self, seen):
        clock = self._clock
        while True:
            clock.sleep(self._wait_between_scale_downs)
            now_seen = self._dispatched
            quiet = now_seen == seen
            seen = now_seen
            self._check_pinned()
            if not quiet or self._buffer or self._overflow or self._room_waiters:
                continue
            live = self._live_count()
            target = max(self._min_workers, live // 2)
            if target < live:
                self._retire(live - target)
                self._scale_downs += 1
                self._logger.info(
                    "dispatcher %r: scaled down from %d to %d workers", self._name, live, target
                )

    def _watchdog_loop(self):
        clock = self._clock
        timeout = self._task_timeout
        period = max(timeout / 10.0, MIN_WATCHDOG_PERIOD)
        while True:
            clock.sleep(period)
            now = clock.monotonic()
            self._check_pinned()
            for worker in list(self._workers):
                if worker.state != _BUSY:
                    worker.seen_done = -1
                    continue
                done = worker.done
                if worker.seen_done != done:
                    worker.seen_done = done
                    worker.seen_since = now
                elif now - worker.seen_since >= timeout and worker.thrown != done:
                    worker.thrown = done
                    self._run_callback(self._interrupt, worker, done)

    def _interrupt(self, worker, done):
        """Runs in the hub: throw the timeout only if the same task is still running."""
        greenlet = worker.greenlet
        same_task = worker.state == _BUSY and worker.done == done
        if same_task and not greenlet.dead and greenlet is not getcurrent():
            greenlet.throw(_TaskTimeout(self._task_timeout))
