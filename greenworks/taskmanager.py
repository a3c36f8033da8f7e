"""
TaskManager: named, unique tasks on an elastic pool of workers, with supervision.

A port of Go's ``plexsysio/taskmanager`` to greenlets, with its hand-off race
designed out and Erlang/OTP-style restart limits added::

    manager = TaskManager(1, 8, timeout=30.0)
    scheduled = manager.go(MyTask("reindex"))   # a gevent Event
    scheduled.wait()                             # a worker picked it up
    manager.task_status()["reindex"].progress
    manager.stop(timeout=10)

How it works (and why it cannot lose a task):

- Pending tasks wait in one FIFO deque; idle workers wait in another, in the
  order they became idle. Handing a task over pops an idle worker, records
  the task on it and sets its wake-up event, all with no greenlet switch in
  between, so no other greenlet can observe a half-done hand-off.
- A worker whose idle wait timed out first looks whether a task was handed
  to it meanwhile (then it runs it) and only then decides to retire, again
  without a switch; it retires only while more than ``min_count`` workers
  exist. ``stop()`` marks the manager stopped in the same atomic way, so a
  task is either assigned (and run, seeing a cancelled context) or dropped
  visibly by ``stop()`` (its handle is set with ``assigned`` False, and a
  warning is logged).
- Scale-up is one clock timer, not a greenlet per task: when the oldest
  pending task has waited ``schedule_delay`` seconds with no idle worker,
  ``ceil((max_count - workers) / 2)`` workers are added, as many times as
  that keeps being true (so tasks that all waited grow the pool like Go's
  per-task schedulers do), never above ``max_count``.
"""

import datetime
import logging
import math
from collections import deque

import gevent
from gevent.event import Event
from zope.interface import implementer

from greenworks import _greenlets
from greenworks._taskmanager_types import (
    _IDLE,
    FailedTask,
    Scheduled,
    TaskStatus,
    WorkerInfo,
    WorkerStatus,
    _count,
    _Entry,
    _FuncTask,
    _number,
    _Worker,
)
from greenworks.clock import get_clock
from greenworks.context import with_cancel
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
    "TaskStatus",
    "WorkerInfo",
    "WorkerStatus",
]

logger = logging.getLogger(__name__)

#: The seed's hard-coded wait before a queued task triggers a scale-up.
DEFAULT_SCHEDULE_DELAY = 0.5
#: Default window for ``max_restarts``.
DEFAULT_RESTART_PERIOD = 5.0

_NOT_ASSIGNED = WorkerStatus.NOT_ASSIGNED
_RUNNING = WorkerStatus.RUNNING
_RESTARTED = WorkerStatus.RESTARTED
# A timer may be computed as (queued_at + delay) - now and land an ulp short.
_EPSILON = 1e-9
# gevent.Timeout is a BaseException, but one escaping execute() is the task's
# own failure, not a reason to kill its worker.
_TASK_ERRORS = (Exception, gevent.Timeout)


@implementer(ITaskManager)
class TaskManager:
    """Default implementation of `ITaskManager`.

    :param int min_count: workers kept alive at all times (``>= 0``); they are
        started by the constructor.
    :param int max_count: the most workers ever alive (``>= max(1, min_count)``).
    :param float timeout: seconds a worker above ``min_count`` may stay idle
        before it retires; ``None`` or ``<= 0`` means never.
    :param logger: a :class:`logging.Logger` (or anything with its methods);
        ``None`` means ``logging.getLogger("greenworks.taskmanager")``.
    :keyword float schedule_delay: how long the oldest pending task waits for
        an idle worker before the pool grows (default 0.5 s, as in Go).
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
        min_count,
        max_count,
        timeout,
        logger=None,
        *,
        schedule_delay=DEFAULT_SCHEDULE_DELAY,
        restart_backoff=None,
        max_restarts=None,
        restart_period=DEFAULT_RESTART_PERIOD,
        clock=None,
        name="taskmanager",
    ):
        self._min = _count("min_count", min_count, 0)
        self._max = _count("max_count", max_count, max(1, min_count))
        timeout = _number("timeout", timeout, "a number of seconds or None", allow_none=True)
        # <= 0 would make Go's workers time out at once and churn forever.
        self._timeout = timeout if timeout is not None and 0 < timeout < math.inf else None
        if logger is None:
            logger = logging.getLogger(__name__)
        elif not all(callable(getattr(logger, m, None)) for m in ("debug", "info", "warning", "error")):
            raise invalid_argument("logger", logger, "a logging.Logger or None")
        self._log = logger
        self._schedule_delay = _number(
            "schedule_delay", schedule_delay, "a finite number of seconds >= 0", minimum=0, finite=True
        )
        if restart_backoff is not None and not IBackoff.providedBy(restart_backoff):
            raise invalid_argument("restart_backoff", restart_backoff, "an IBackoff or None")
        self._backoff = restart_backoff
        self._max_restarts = None if max_restarts is None else _count("max_restarts", max_restarts, 0)
        self._restart_period = _number(
            "restart_period", restart_period, "a finite number of seconds > 0", finite=True
        )
        if not restart_period > 0:
            raise invalid_argument("restart_period", restart_period, "a finite number of seconds > 0")
        if not isinstance(name, str) or not name:
            raise invalid_argument("name", name, "a non-empty str")
        self._name = name
        self._clock = get_clock(clock)
        self._ctx = with_cancel(None, clock=self._clock)
        self._workers = {}
        self._idle = deque()
        self._pending = deque()
        self._tasks = {}
        self._failed = {}
        self._next_id = 1
        self._stopped = False
        self._exited = Event()
        self._scale_timer = None
        self._add_workers(self._min)
        self._log.info(
            "taskmanager %s started: min=%d max=%d idle timeout=%s", name, self._min, self._max, self._timeout
        )

    # -- submitting ----------------------------------------------------------

    def go(self, task):
        """Queue *task*; a worker picks it up at once if one is idle.

        :return Scheduled: a gevent ``Event`` set once a worker picked the
            task up (or once ``stop()`` dropped it; see ``assigned``).
        :raises InvalidArgument: if *task* has no ``name()``/``execute(ctx)``
            or its name is not a str.
        :raises ManagerStoppedError: after ``stop()``; nothing is recorded.
        :raises TaskAlreadyExistsError: a task of that name is pending,
            running or waiting to restart.
        """
        execute = getattr(task, "execute", None)
        name_fn = getattr(task, "name", None)
        if not callable(execute) or not callable(name_fn):
            raise invalid_argument("task", task, "an IManagedTask with name() and execute(ctx)")
        name = name_fn()
        if not isinstance(name, str):
            raise invalid_argument("task.name()", name, "a str")
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

    def go_func(self, key, fn):
        """Queue ``fn(ctx)`` as a task named *key*; same contract as :meth:`go`.

        :raises InvalidArgument: if *key* is not a str or *fn* not callable.
        """
        if not isinstance(key, str):
            raise invalid_argument("key", key, "a str")
        if not callable(fn):
            raise invalid_argument("fn", fn, "a callable taking a context")
        return self.go(_FuncTask(key, fn))

    # -- reading -------------------------------------------------------------

    def status(self):
        return {
            wid: _IDLE if worker.task is None else WorkerInfo(worker.task.name, _RUNNING)
            for wid, worker in self._workers.items()
        }

    def task_status(self):
        """Return ``{name: TaskStatus}`` for every pending, running or restarting task.

        ``progress()`` and ``description()`` are called now, on the caller's
        greenlet; an exception from either reads as 0.0 / "".
        """
        return {name: self._task_status(entry) for name, entry in self._tasks.items()}

    def failed_tasks(self):
        """Return ``{name: FailedTask}`` for tasks given up after ``max_restarts``.

        A record stays until a task of the same name is submitted again.
        """
        return dict(self._failed)

    def snapshot(self):
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
                "failed_at": f.failed_at.isoformat(),
            }
            for f in self._failed.values()
        ]
        workers = {
            str(wid): {"task": info.task_name, "status": info.status.value}
            for wid, info in self.status().items()
        }
        return {
            "component": "taskmanager",
            "name": self.name,
            "workers": workers,
            "tasks": tasks,
            "failed": failed,
        }

    @property
    def name(self):
        """The manager's name (read-only), used in greenlet names and ``snapshot()``."""
        return self._name

    @property
    def stopped(self):
        """True once ``stop()`` was called."""
        return self._stopped

    # -- stopping ------------------------------------------------------------

    def stop(self, timeout=None):
        """Cancel the context of every running task and wait for all workers to exit.

        The first call cancels the manager's context, drops every task no
        worker has picked up yet (their handles are set with ``assigned``
        False; one warning names them), cancels pending restarts and wakes the
        idle workers. A task already handed to a worker still runs, with the
        cancelled context. Every call then blocks until all workers exited.

        If workers outlive *timeout* (measured on the manager's clock), they
        are killed with ``GreenletExit`` (this blocks until they died) before
        the error is raised, so no greenlet is ever left behind and
        ``status()`` is empty either way. Idempotent. Must not be called from
        one of the manager's own tasks, which would wait for itself.

        :param float timeout: seconds to wait, ``None`` for as long as it takes.
        :raises StopTimeoutError: "failed to stop taskmanager" if workers had
            to be killed.
        """
        timeout = _number("timeout", timeout, "a number of seconds or None", allow_none=True)
        if not self._stopped:
            self._begin_stop()
        if self._clock.wait(self._exited, timeout):
            return
        stragglers = [w.greenlet for w in list(self._workers.values()) if w.greenlet is not None]
        self._log.warning(
            "taskmanager %s: killing %d worker(s) still running after %ss",
            self.name,
            len(stragglers),
            timeout,
        )
        gevent.killall(stragglers, block=True)
        raise StopTimeoutError("failed to stop taskmanager")

    def _begin_stop(self):
        self._stopped = True
        self._log.info("taskmanager %s stopping", self.name)
        self._ctx.cancel()
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
            sched, entry.sched = entry.sched, None
            if sched is not None:
                sched.assigned = False
                sched.set()
        if dropped:
            self._log.warning(
                "taskmanager %s stopped before %d task(s) could be scheduled: %s",
                self.name,
                len(dropped),
                ", ".join(e.name for e in dropped),
            )
        while self._idle:
            self._idle.popleft().wakeup.set()
        if not self._workers:
            self._exited.set()

    # -- scheduling (none of these switch greenlets) -------------------------

    def _enqueue(self, entry):
        # Invariant: a worker is idle only while nothing is pending.
        if self._idle:
            self._assign(self._idle.popleft(), entry)
        else:
            self._pending.append(entry)
            self._arm_scale_timer()

    def _assign(self, worker, entry):
        worker.task = entry
        entry.status = _RUNNING
        entry.worker = worker.id
        entry.run_started = self._clock.monotonic()
        sched = entry.sched
        if sched is not None:
            entry.sched = None
            sched.assigned = True
            sched.worker = worker.id
            sched.set()
        worker.wakeup.set()

    def _dispatch(self):
        pending, idle = self._pending, self._idle
        while pending and idle:
            self._assign(idle.popleft(), pending.popleft())

    def _add_workers(self, count):
        added = 0
        while added < count and not self._stopped and len(self._workers) < self._max:
            worker = _Worker(self._next_id)
            self._next_id += 1
            self._workers[worker.id] = worker
            self._idle.append(worker)
            label = "greenworks.%s[%d]" % (self.name, worker.id)
            worker.greenlet = _greenlets.spawn(label, self._work, worker)
            added += 1
        return added

    def _arm_scale_timer(self):
        if self._scale_timer is not None or not self._pending or len(self._workers) >= self._max:
            return
        due = self._pending[0].queued_at + self._schedule_delay
        self._scale_timer = self._clock.call_later(due - self._clock.monotonic(), self._scale_up)

    def _scale_up(self):
        # Runs from the clock (the hub, or FakeClock.advance): must not block.
        self._scale_timer = None
        if self._stopped:
            return
        now = self._clock.monotonic()
        before = len(self._workers)
        while self._pending and not self._idle and len(self._workers) < self._max:
            if self._pending[0].queued_at + self._schedule_delay > now + _EPSILON:
                break
            self._add_workers(math.ceil((self._max - len(self._workers)) / 2))
            self._dispatch()
        if len(self._workers) != before:
            self._log.debug(
                "taskmanager %s scaled up from %d to %d workers", self.name, before, len(self._workers)
            )
            if len(self._workers) >= self._max and self._pending:
                self._log.warning(
                    "taskmanager %s at maximum (%d workers) with %d task(s) pending",
                    self.name,
                    self._max,
                    len(self._pending),
                )
        self._arm_scale_timer()

    def _requeue(self, entry):
        # From a restart-backoff timer or straight from the failed worker.
        entry.timer = None
        if self._stopped or self._tasks.get(entry.name) is not entry:
            return
        entry.status = _NOT_ASSIGNED
        entry.worker = 0
        entry.queued_at = self._clock.monotonic()
        self._enqueue(entry)

    # -- workers -------------------------------------------------------------

    def _work(self, worker):
        try:
            while True:
                entry = worker.task
                if entry is None:
                    if self._stopped:
                        return
                    worker.wakeup.clear()
                    self._clock.wait(worker.wakeup, self._timeout)
                    entry = worker.task
                    if entry is None:
                        # The check and the retirement happen with no switch
                        # in between: a hand-off cannot sneak into the gap,
                        # and simultaneous timeouts cannot go below min.
                        if self._stopped:
                            return
                        if not worker.wakeup.is_set() and len(self._workers) > self._min:
                            self._idle.remove(worker)
                            del self._workers[worker.id]
                            self._log.debug(
                                "taskmanager %s: worker %d retired after idling %ss",
                                self.name,
                                worker.id,
                                self._timeout,
                            )
                            return
                        continue
                failed = self._run(entry)
                worker.task = None
                if failed:
                    # A task failing at once and restarting at once must not
                    # starve the hub: let other greenlets run between runs.
                    gevent.sleep(0)
                if self._stopped:
                    return
                if self._pending:
                    self._assign(worker, self._pending.popleft())
                    if not self._pending and self._scale_timer is not None:
                        self._scale_timer.cancel()
                        self._scale_timer = None
                else:
                    self._idle.append(worker)
        finally:
            self._worker_exited(worker)

    def _worker_exited(self, worker):
        if self._workers.pop(worker.id, None) is not None:
            try:
                self._idle.remove(worker)
            except ValueError:
                pass
        entry = worker.task
        if entry is not None:
            # Killed (stop() after its timeout, or by someone else) mid-task.
            worker.task = None
            if self._tasks.get(entry.name) is entry:
                del self._tasks[entry.name]
            self._log.warning(
                "taskmanager %s: task %r was killed on worker %d", self.name, entry.name, worker.id
            )
        if self._stopped:
            if not self._workers:
                self._exited.set()
        elif len(self._workers) < self._min:
            # Only a greenlet killed from outside gets here; keep the floor.
            self._add_workers(self._min - len(self._workers))
            self._dispatch()

    def _run(self, entry):
        """Run one task to its end; return True if it failed."""
        try:
            entry.task.execute(self._ctx)
        except _TASK_ERRORS as exc:
            self._failed_run(entry, exc)
            return True
        if self._tasks.get(entry.name) is entry:
            del self._tasks[entry.name]
        return False

    def _failed_run(self, entry, err):
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

    def _schedule_restart(self, entry, err):
        now = self._clock.monotonic()
        if now - entry.run_started >= self._restart_period:
            entry.consecutive = 0
        times = entry.restart_times
        if times is None:
            times = entry.restart_times = deque()
        while times and times[0] <= now - self._restart_period:
            times.popleft()
        if self._max_restarts is not None and len(times) >= self._max_restarts:
            del self._tasks[entry.name]
            self._failed[entry.name] = FailedTask(
                entry.name, entry.restarts, err, self._clock.now(datetime.timezone.utc)
            )
            self._log.error(
                "taskmanager %s: task %r failed after %d restart(s) within %ss; giving up: %r",
                self.name,
                entry.name,
                len(times),
                self._restart_period,
                err,
                exc_info=err,
            )
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
        if delay > 0:
            entry.timer = self._clock.call_later(delay, self._requeue, entry)
        else:
            self._requeue(entry)

    def _task_status(self, entry):
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
            started_at = datetime.datetime.fromtimestamp(wall, datetime.timezone.utc)
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

    def __repr__(self):
        return "<greenworks.TaskManager %s workers=%d pending=%d tasks=%d%s>" % (
            self.name,
            len(self._workers),
            len(self._pending),
            len(self._tasks),
            " stopped" if self._stopped else "",
        )
