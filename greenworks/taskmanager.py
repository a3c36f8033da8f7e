"""
TaskManager: named, unique tasks on an elastic pool of workers, with supervision.

Named tasks with supervision and Erlang/OTP-style restart limits::

    with TaskManager(1, 8, timeout=30.0) as manager:
        scheduled = manager.go(MyTask("reindex"))   # a gevent Event, plus the outcome
        scheduled.wait()                             # a worker picked it up
        manager.task_status()["reindex"].progress
        scheduled.join()                             # the task is done for good
    # leaving the block stopped the manager: stop(timeout) -> bool

How it works (and why it cannot lose a task):

- Pending tasks wait in one FIFO deque; idle workers park in the shared
  worker core (`greenworks._workers.WorkerSet`), oldest-idle first. Handing
  a task over takes an idle worker off the idle list, records the task on it
  and schedules its wake-up, all with no greenlet switch in between, so no
  other greenlet can observe a half-done hand-off. A worker that starts, or
  finishes a task, takes the oldest pending task itself.
- A parked worker's idle timeout is a timer that fires only while the
  worker is still parked: a worker woken first keeps its task, one timed out
  first can no longer be handed one. It then retires only while more than
  ``min_workers`` workers exist. ``stop()`` marks the manager stopped in the
  same atomic way, so a task is either assigned (and run, seeing a
  cancelled context) or dropped visibly by ``stop()`` (its handle is set
  with ``assigned`` False and its outcome is `Canceled`; a warning names it).
- Scale-up is one clock timer, not a greenlet per task: when the oldest
  pending task that no starting worker will take has waited
  ``schedule_delay`` seconds, ``ceil((max_workers - workers) / 2)`` workers
  are added, as many times as that keeps being true, never above
  ``max_workers``.

Differences from the original (plexsysio/taskmanager): its hand-off race
(a crash with a 1 ms idle timeout) is designed out, ``go()`` after ``stop()``
raises, a failed task is never forgotten (its handle and ``failed_tasks()``
carry the error), and ``stop(timeout)`` kills what outlives it and returns
False (``raise_on_timeout=True`` raises `StopTimeoutError` as the original
returned an error).
"""

import datetime
import logging
import math
from collections import deque
from typing import Any

import gevent
from zope.interface import implementer

from greenworks import _checks
from greenworks._component import Lifecycle, State
from greenworks._taskmanager_types import (
    _IDLE,
    FailedTask,
    Scheduled,
    TaskState,
    TaskStatus,
    WorkerInfo,
    WorkerStatus,
    _Entry,
    _FuncTask,
)
from greenworks._workers import WorkerSet
from greenworks.clock import ClockLike
from greenworks.events import TaskGaveUp, TaskRestarted
from greenworks.exceptions import (
    Canceled,
    ManagerStoppedError,
    StopTimeoutError,
    TaskAlreadyExistsError,
    invalid_argument,
)
from greenworks.interfaces import IBackoff, ITaskManager

__all__ = [
    "FailedTask",
    "Scheduled",
    "TaskManager",
    "TaskState",
    "TaskStatus",
    "WorkerInfo",
    "WorkerStatus",
]

logger = logging.getLogger(__name__)

#: How long the oldest pending task waits for an idle worker before the pool grows.
DEFAULT_SCHEDULE_DELAY = 0.5
#: Default window for ``max_restarts``.
DEFAULT_RESTART_PERIOD = 5.0

_NOT_ASSIGNED = TaskState.NOT_ASSIGNED
_RUNNING = TaskState.RUNNING
_RESTARTED = TaskState.RESTARTED
_UTC = datetime.timezone.utc
# A timer may be computed as (queued_at + delay) - now and land an ulp short.
_EPSILON = 1e-9
# gevent.Timeout is a BaseException, but one escaping execute() is the task's
# own failure, not a reason to kill its worker.
_TASK_ERRORS = (Exception, gevent.Timeout)


@implementer(ITaskManager)
class TaskManager:
    """Default implementation of `ITaskManager`.

    :param int min_workers: workers kept alive at all times (``>= 0``); they are
        started by the constructor.
    :param int max_workers: the most workers ever alive (``>= max(1, min_workers)``).
    :param float timeout: seconds a worker above ``min_workers`` may stay idle
        before it retires; ``None`` or ``0`` means never.
    :param logger: a :class:`logging.Logger` (or anything with its methods);
        ``None`` means ``logging.getLogger("greenworks.taskmanager")``.
    :keyword float schedule_delay: how long the oldest pending task waits for
        an idle worker before the pool grows (default 0.5 s).
    :keyword restart_backoff: an `IBackoff`; a restart waits
        ``duration(n)`` seconds, *n* being the task's consecutive restarts
        (1 for the first). The count starts over when a run lasted
        ``restart_period`` or longer. ``None``: restart at once.
    :keyword int max_restarts: give a task up when restarting it again would
        make more than this many restarts within ``restart_period`` seconds
        (OTP's intensity/period); ``None`` means no limit.
    :keyword float restart_period: the window for ``max_restarts`` (> 0).
    :keyword clock: an `IClock`; every wait, timer and timestamp uses it.
    :keyword str name: names the workers' greenlets ``greenworks.<name>[<id>]``
        and ``snapshot()``.
    :raises InvalidArgument: for any bad argument, naming it.

    Concurrency: every method except ``stop()`` returns without switching
    greenlets. Tasks run on worker greenlets, so a task that never yields
    holds up the hub like any greenlet. A task's ``restart(ctx, err)`` runs on
    its worker greenlet, before the worker takes other work.
    """

    def __init__(
        self,
        min_workers: int,
        max_workers: int,
        timeout: float | None,
        logger: Any = None,
        *,
        schedule_delay: float = DEFAULT_SCHEDULE_DELAY,
        restart_backoff: Any = None,
        max_restarts: int | None = None,
        restart_period: float = DEFAULT_RESTART_PERIOD,
        clock: ClockLike | None = None,
        name: str = "taskmanager",
    ) -> None:
        self._min = _checks.count("min_workers", min_workers)
        self._max = _checks.count("max_workers", max_workers, minimum=max(1, self._min))
        # 0 is "never" as None is: a worker that retired the moment it idled would churn.
        self._timeout = _checks.seconds("timeout", timeout, none=True) or None
        self._schedule_delay = _checks.seconds("schedule_delay", schedule_delay)
        if restart_backoff is not None and not IBackoff.providedBy(restart_backoff):
            raise invalid_argument("restart_backoff", restart_backoff, "an IBackoff or None")
        self._backoff = restart_backoff
        self._max_restarts = _checks.count("max_restarts", max_restarts, none=True)
        self._restart_period = _checks.seconds("restart_period", restart_period, positive=True)
        self._life = life = Lifecycle(self, "taskmanager", name, clock, logger, __name__)
        self._name = life.name
        self._clock = life.clock
        self._log = life.logger
        self._pool = WorkerSet(
            life, self._work, "greenworks.%s[%%d]" % life.name, first_index=1, on_exit=self._worker_exited
        )
        self._ctx = self._pool.ctx
        self._pending: deque[_Entry] = deque()
        self._tasks: dict[str, _Entry] = {}
        self._failed: dict[str, FailedTask] = {}
        self._stopped = False
        self._last_clean = True
        self._scale_timer: Any = None
        life.started()
        self._add_workers(self._min)
        self._log.info(
            "taskmanager %s started: min=%d max=%d idle timeout=%s", name, self._min, self._max, self._timeout
        )

    # -- submitting ----------------------------------------------------------

    def go(self, task: Any) -> Scheduled:
        """Queue *task*; a worker picks it up at once if one is idle.

        :return Scheduled: a gevent ``Event`` set once a worker picked the
            task up (or once ``stop()`` dropped it; see ``assigned``), which
            also carries the task's outcome (``join``, ``result``, ``exception``).
        :raises InvalidArgument: if *task* has no ``name()``/``execute(ctx)``
            or its name is not a non-empty str.
        :raises ManagerStoppedError: after ``stop()``; nothing is recorded.
        :raises TaskAlreadyExistsError: a task of that name is pending,
            running or waiting to restart.
        """
        execute = getattr(task, "execute", None)
        name_fn = getattr(task, "name", None)
        if not callable(execute) or not callable(name_fn):
            raise invalid_argument("task", task, "an IManagedTask with name() and execute(ctx)")
        name = _checks.name("task.name()", name_fn())
        if self._stopped:
            raise ManagerStoppedError()
        if name in self._tasks:
            self._log.debug("task %r already exists", name)
            raise TaskAlreadyExistsError()
        self._failed.pop(name, None)
        sched = Scheduled()
        entry = _Entry(task, name, sched, self._clock.monotonic())
        self._tasks[name] = entry
        self._enqueue(entry)
        return sched

    def go_func(self, key: str, fn: Any) -> Scheduled:
        """Queue ``fn(ctx)`` as a task named *key*; same contract as :meth:`go`.

        :raises InvalidArgument: if *key* is not a non-empty str or *fn* not callable.
        """
        _checks.name("key", key)
        if not callable(fn):
            raise invalid_argument("fn", fn, "a callable taking a context")
        return self.go(_FuncTask(key, fn))

    # -- reading -------------------------------------------------------------

    @property
    def name(self) -> str:
        """The manager's name (read-only), used in greenlet names and ``snapshot()``."""
        return self._name

    @property
    def state(self) -> State:
        return self._life.state

    @property
    def stopped(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stopped

    @property
    def min_workers(self) -> int:
        return self._min

    @property
    def max_workers(self) -> int:
        return self._max

    def worker_info(self) -> dict[int, WorkerInfo]:
        """Return ``{worker_id: WorkerInfo}`` for every live worker. Never blocks."""
        return {
            worker.index: _IDLE if worker.item is None else WorkerInfo(worker.item.name, _RUNNING)
            for worker in self._pool.workers
        }

    def status(self) -> dict[int, WorkerInfo]:
        """Deprecated name of :meth:`worker_info` (the seed's ``Status``)."""
        return self.worker_info()

    def task_status(self) -> dict[str, TaskStatus]:
        """Return ``{name: TaskStatus}`` for every pending, running or restarting task.

        ``progress()`` and ``description()`` are called now, on the caller's
        greenlet; an exception from either reads as 0.0 / "".
        """
        return {name: self._task_status(entry) for name, entry in self._tasks.items()}

    def failed_tasks(self) -> dict[str, FailedTask]:
        """Return ``{name: FailedTask}`` for tasks that failed for good.

        That is a task whose run raised and that was not restarted (it is
        not restartable, or its ``restart()`` said no), or one given up after
        ``max_restarts``. A record stays until a task of the same name is
        submitted again.
        """
        return dict(self._failed)

    def stats(self) -> dict[str, int]:
        """Counters and sizes now, as a dict of ints. Never blocks."""
        pool = self._pool
        return {
            "workers": len(pool),
            "idle": len(pool.idle),
            "pending": len(self._pending),
            "tasks": len(self._tasks),
            "failed": len(self._failed),
        }

    def snapshot(self) -> dict[str, Any]:
        """Return the manager's state as a JSON-serialisable dict (for health pages)."""
        tasks = []
        for status in self.task_status().values():
            tasks.append(
                {
                    "name": status.name,
                    "worker": status.worker,
                    "status": status.status.value,
                    "description": status.description,
                    "progress": status.progress,
                    "restarts": status.restarts,
                    "last_error": None if status.last_error is None else repr(status.last_error),
                    "started_at": None if status.started_at is None else status.started_at.isoformat(),
                }
            )
        failed = [
            {
                "name": f.name,
                "restarts": f.restarts,
                "last_error": None if f.last_error is None else repr(f.last_error),
                "failed_at": f.failed_at.astimezone(_UTC).isoformat(),
            }
            for f in self._failed.values()
        ]
        workers = {
            str(wid): {"task": info.task_name, "status": info.status.value}
            for wid, info in self.worker_info().items()
        }
        snap = self._life.header()
        snap.update(workers=workers, tasks=tasks, failed=failed, min_workers=self._min, max_workers=self._max)
        return snap

    # -- stopping ------------------------------------------------------------

    def start(self) -> "TaskManager":
        """See `IComponent.start`: a TaskManager runs from construction, so this returns it.

        :raises ManagerStoppedError: after :meth:`stop` (a TaskManager does not restart).
        """
        if self._stopped:
            raise ManagerStoppedError("taskmanager %r is stopped and cannot start again" % self._name)
        return self

    def stop(self, timeout: float | None = None, *, raise_on_timeout: bool = False) -> bool:
        """Cancel the context of every running task and wait for all workers to exit.

        The first call cancels the manager's context, drops every task no
        worker has picked up yet (their handles are set with ``assigned``
        False and their outcome is `Canceled`; one warning names them),
        cancels pending restarts and wakes the idle workers. A task already
        handed to a worker still runs, with the cancelled context. Every call
        then blocks until all workers exited.

        Workers that outlive *timeout* (measured on the manager's clock) are
        killed with ``GreenletExit`` (this blocks until they died), so no
        greenlet is ever left behind and ``worker_info()`` is empty either
        way. Idempotent.

        :param float timeout: seconds to wait, ``None`` for as long as it takes.
        :param bool raise_on_timeout: raise `StopTimeoutError` instead of
            returning False (the seed's "failed to stop taskmanager").
        :return bool: True if every worker ended in time; False if workers
            had to be killed.
        :raises ReentrantStopError: from one of the manager's own tasks.
        """
        timeout = _checks.seconds("timeout", timeout, none=True)
        life = self._life
        life.check_not_own("stop")
        if self._stopped:
            life.wait_stopped()
            clean = self._last_clean
        else:
            self._begin_stop()
            clean = self._pool.finish(timeout)
            self._last_clean = clean
            life.stopped(clean)
        if not clean and raise_on_timeout:
            raise StopTimeoutError("failed to stop taskmanager")
        return clean

    def __enter__(self) -> "TaskManager":
        return self.start()

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.stop()

    def _begin_stop(self) -> None:
        self._stopped = True
        self._life.state = State.STOPPING
        self._log.info("taskmanager %s stopping", self.name)
        self._pool.close()
        if self._scale_timer is not None:
            self._scale_timer.cancel()
            self._scale_timer = None
        dropped = list(self._pending)
        self._pending.clear()
        for entry in self._tasks.values():
            if entry.timer is not None:
                entry.timer.cancel()
                entry.timer = None
                dropped.append(entry)
        for entry in dropped:
            self._tasks.pop(entry.name, None)
            sched = entry.sched
            if not sched.is_set():
                sched.assigned = False
                sched.set()
            sched._finish(
                Canceled("taskmanager %r stopped before task %r could run" % (self._name, entry.name))
            )
        if dropped:
            self._log.warning(
                "taskmanager %s stopped before %d task(s) could be scheduled: %s",
                self.name,
                len(dropped),
                ", ".join(e.name for e in dropped),
            )
        self._pool.retire(len(self._pool.idle))

    # -- scheduling (none of these switch greenlets) -------------------------

    def _enqueue(self, entry: _Entry) -> None:
        # Invariant: a worker is idle only while nothing is pending.
        worker = self._pool.wake(lifo=False)
        if worker is not None:
            self._assign(worker, entry)
        else:
            self._pending.append(entry)
            self._arm_scale_timer()

    def _assign(self, worker: Any, entry: _Entry) -> None:
        worker.item = entry
        entry.status = _RUNNING
        entry.worker = worker.index
        entry.run_started = self._clock.monotonic()
        sched = entry.sched
        if not sched.is_set():
            sched.assigned = True
            sched.worker = worker.index
            sched.set()

    def _dispatch(self) -> None:
        pending, pool = self._pending, self._pool
        while pending and pool.idle:
            self._assign(pool.wake(lifo=False), pending.popleft())

    def _add_workers(self, count: int) -> int:
        # Workers are born idle, so a task can be handed to one at once.
        added = 0
        pool = self._pool
        while added < count and not self._stopped and len(pool) < self._max:
            pool.spawn(idle=True)
            added += 1
        return added

    def _arm_scale_timer(self) -> None:
        if self._scale_timer is not None or not self._pending or len(self._pool) >= self._max:
            return
        due = self._pending[0].queued_at + self._schedule_delay
        self._scale_timer = self._clock.call_later(due - self._clock.monotonic(), self._scale_up)

    def _scale_up(self) -> None:
        # Runs from the clock (the hub, or FakeClock.advance): must not block.
        self._scale_timer = None
        if self._stopped:
            return
        pool = self._pool
        pending = self._pending
        now = self._clock.monotonic()
        before = len(pool)
        while pending and not pool.idle and len(pool) < self._max:
            if pending[0].queued_at + self._schedule_delay > now + _EPSILON:
                break
            self._add_workers(math.ceil((self._max - len(pool)) / 2))
            self._dispatch()
        if len(pool) != before:
            self._log.debug("taskmanager %s scaled up from %d to %d workers", self.name, before, len(pool))
            if len(pool) >= self._max and pending:
                self._log.warning(
                    "taskmanager %s at maximum (%d workers) with %d task(s) pending",
                    self.name,
                    self._max,
                    len(pending),
                )
        self._arm_scale_timer()

    def _requeue(self, entry: _Entry) -> None:
        # From a restart-backoff timer or straight from the failed worker.
        entry.timer = None
        if self._stopped or self._tasks.get(entry.name) is not entry:
            return
        entry.status = _NOT_ASSIGNED
        entry.worker = 0
        entry.queued_at = self._clock.monotonic()
        self._enqueue(entry)

    # -- workers -------------------------------------------------------------

    def _work(self, worker: Any) -> None:
        pool = self._pool
        pool.started(worker)
        while True:
            entry = worker.item
            if entry is None:
                if self._stopped or worker.retire:
                    return
                if self._pending:
                    entry = self._pending.popleft()
                    self._assign(worker, entry)
                    if not self._pending and self._scale_timer is not None:
                        self._scale_timer.cancel()
                        self._scale_timer = None
                elif pool.park(worker, self._timeout):
                    continue
                elif len(pool) > self._min and not self._stopped:
                    # Timed out while still parked: nothing can be handed to
                    # it any more, and the check happens with no switch.
                    self._log.debug(
                        "taskmanager %s: worker %d retired after idling %ss",
                        self.name,
                        worker.index,
                        self._timeout,
                    )
                    return
                else:
                    continue
            failed = self._run(entry)
            worker.item = None
            if failed:
                # A task failing at once and restarting at once must not
                # starve the hub: let other greenlets run between runs.
                gevent.sleep(0)

    def _worker_exited(self, worker: Any) -> None:
        entry: _Entry | None = worker.item
        if entry is not None:
            # Killed (stop() after its timeout, or by someone else) mid-task.
            worker.item = None
            if self._tasks.get(entry.name) is entry:
                del self._tasks[entry.name]
            entry.sched._finish(Canceled("task %r was killed on worker %d" % (entry.name, worker.index)))
            self._log.warning(
                "taskmanager %s: task %r was killed on worker %d", self.name, entry.name, worker.index
            )
        if not self._stopped and len(self._pool) < self._min:
            # Only a greenlet killed from outside gets here; keep the floor.
            self._add_workers(self._min - len(self._pool))
            self._dispatch()

    def _run(self, entry: _Entry) -> bool:
        """Run one task to its end; return True if it failed."""
        try:
            entry.task.execute(self._ctx)
        except _TASK_ERRORS as exc:
            self._failed_run(entry, exc)
            return True
        if self._tasks.get(entry.name) is entry:
            del self._tasks[entry.name]
        entry.sched._finish(None)
        return False

    def _failed_run(self, entry: _Entry, err: BaseException) -> None:
        name = entry.name
        entry.last_error = err
        restart = entry.restart
        again = False
        if restart is not None and not isinstance(err, Canceled) and not self._stopped:
            try:
                again = bool(restart(self._ctx, err))
            except _TASK_ERRORS:
                self._log.exception(
                    "taskmanager %s: restart() of task %r raised; not restarting", self.name, name
                )
        if again and not self._stopped and self._tasks.get(name) is entry:
            self._schedule_restart(entry, err)
            return
        if self._tasks.get(name) is entry:
            del self._tasks[name]
        if isinstance(err, Canceled):
            self._log.debug("taskmanager %s: task %r cancelled", self.name, name)
        else:
            self._log.error("taskmanager %s: task %r failed: %r", self.name, name, err, exc_info=err)
            self._give_up(entry, err)
        entry.sched._finish(err)

    def _give_up(self, entry: _Entry, err: BaseException) -> None:
        self._failed[entry.name] = FailedTask(entry.name, entry.restarts, err, self._clock.now(_UTC))
        self._life.emit(TaskGaveUp, entry.name, entry.restarts, err)

    def _schedule_restart(self, entry: _Entry, err: BaseException) -> None:
        now = self._clock.monotonic()
        assert entry.run_started is not None  # _assign set it before the run that failed
        if now - entry.run_started >= self._restart_period:
            entry.consecutive = 0
        times = entry.restart_times
        if times is None:
            times = entry.restart_times = deque()
        while times and times[0] <= now - self._restart_period:
            times.popleft()
        if self._max_restarts is not None and len(times) >= self._max_restarts:
            del self._tasks[entry.name]
            self._log.error(
                "taskmanager %s: task %r failed after %d restart(s) within %ss; giving up: %r",
                self.name,
                entry.name,
                len(times),
                self._restart_period,
                err,
                exc_info=err,
            )
            self._give_up(entry, err)
            entry.sched._finish(err)
            return
        times.append(now)
        entry.restarts += 1
        entry.consecutive += 1
        entry.status = _RESTARTED
        entry.worker = 0
        delay = 0.0
        if self._backoff is not None:
            try:
                delay = self._backoff.duration(entry.consecutive)
            except Exception:
                self._log.exception(
                    "taskmanager %s: restart_backoff.duration(%d) raised; restarting now",
                    self.name,
                    entry.consecutive,
                )
        self._log.warning(
            "taskmanager %s: task %r failed (%r); restart #%d in %.3fs",
            self.name,
            entry.name,
            err,
            entry.restarts,
            delay,
            exc_info=err,
        )
        self._life.emit(TaskRestarted, entry.name, entry.restarts, err)
        if delay > 0:
            entry.timer = self._clock.call_later(delay, self._requeue, entry)
        else:
            self._requeue(entry)

    def _task_status(self, entry: _Entry) -> TaskStatus:
        description, progress, started_at = "", 0.0, None
        if entry.progress is not None:
            try:
                progress = float(entry.progress())
            except Exception:
                progress = 0.0
        if entry.description is not None:
            try:
                description = str(entry.description())
            except Exception:
                description = ""
        if entry.status is _RUNNING and entry.run_started is not None:
            clock = self._clock
            wall = clock.time() - (clock.monotonic() - entry.run_started)
            started_at = datetime.datetime.fromtimestamp(wall, _UTC)
        return TaskStatus(
            entry.name,
            entry.worker,
            entry.status,
            description,
            progress,
            entry.restarts,
            entry.last_error,
            started_at,
        )

    def __repr__(self) -> str:
        return "<greenworks.TaskManager %s %s workers=%d pending=%d tasks=%d>" % (
            self.name,
            self._life.state.value,
            len(self._pool),
            len(self._pending),
            len(self._tasks),
        )
