"""
Value types of the TaskManager (states, status snapshots, the schedule handle)
and the private per-task and per-worker records it keeps.

The public types are re-exported by :mod:`greenworks.taskmanager`; import
them from there.
"""

import datetime
import enum
import math
from dataclasses import dataclass

from gevent.event import Event
from zope.interface import implementer

from greenworks._checks import is_int, is_real
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IManagedTask

__all__ = ["FailedTask", "Scheduled", "TaskStatus", "WorkerInfo", "WorkerStatus"]


class WorkerStatus(str, enum.Enum):
    """The state of a worker or of a task, spelled exactly as the Go seed spells it.

    A worker is WAITING (idle, shown as task name ``"idle"``) or RUNNING.
    A task is NOT_ASSIGNED (queued), RUNNING, or RESTARTED (failed, its
    restart accepted, waiting out the restart backoff before it is queued
    again).
    """

    NOT_ASSIGNED = "not assigned"
    WAITING = "waiting"
    RUNNING = "running"
    RESTARTED = "restarted"

    def __str__(self):
        return self.value


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What one worker is doing: ``WorkerInfo("idle", WorkerStatus.WAITING)`` when idle."""

    task_name: str
    status: WorkerStatus


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """A snapshot of one pending, running or restarting task.

    :ivar str name: the task's name.
    :ivar int worker: the id of the worker running it, 0 while not assigned.
    :ivar WorkerStatus status: NOT_ASSIGNED, RUNNING or RESTARTED.
    :ivar str description: the task's ``description()`` read live ("" if it
        has none or it raised).
    :ivar float progress: the task's ``progress()`` read live (0.0 if it has
        none or it raised).
    :ivar int restarts: how many times the task was restarted.
    :ivar last_error: the exception of its latest failed run, or None.
    :ivar started_at: aware UTC ``datetime`` when its current run started,
        or None while it is not running.
    """

    name: str
    worker: int
    status: WorkerStatus
    description: str = ""
    progress: float = 0.0
    restarts: int = 0
    last_error: BaseException | None = None
    started_at: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class FailedTask:
    """A task the manager gave up on because it hit ``max_restarts`` within ``restart_period``.

    :ivar str name: the task's name (free to be submitted again).
    :ivar int restarts: restarts it had before the manager gave up.
    :ivar last_error: the exception of its last run.
    :ivar failed_at: aware UTC ``datetime`` of the decision.
    """

    name: str
    restarts: int
    last_error: BaseException | None
    failed_at: datetime.datetime


class Scheduled(Event):
    """The handle ``TaskManager.go`` returns: a gevent ``Event`` plus the outcome.

    It is set exactly once: when a worker picked the task up (``assigned`` is
    True and ``worker`` its id), or when ``stop()`` dropped the task before
    any worker took it (``assigned`` is False), so a greenlet waiting on it
    never hangs. Before it is set, ``assigned`` is None and ``worker`` 0.
    """

    __slots__ = ("assigned", "worker")

    def __init__(self):
        super().__init__()
        self.assigned = None
        self.worker = 0

    def __repr__(self):
        return "<greenworks.taskmanager.Scheduled assigned=%r worker=%d>" % (self.assigned, self.worker)


_IDLE = WorkerInfo("idle", WorkerStatus.WAITING)


# -- private records and argument checks -----------------------------------------


def _number(name, value, expected, minimum=None, allow_none=False, finite=False):
    if value is None and allow_none:
        return None
    if not is_real(value) or value != value:
        raise invalid_argument(name, value, expected)
    if finite and not math.isfinite(value):
        raise invalid_argument(name, value, expected)
    if minimum is not None and value < minimum:
        raise invalid_argument(name, value, expected)
    return value


def _count(name, value, minimum):
    if not is_int(value) or value < minimum:
        raise invalid_argument(name, value, "an int >= %d" % minimum)
    return value


def _callable_attr(obj, attr):
    method = getattr(obj, attr, None)
    return method if callable(method) else None


@implementer(IManagedTask)
class _FuncTask:
    """Default implementation of `IManagedTask` wrapping ``fn(ctx)`` under a name."""

    __slots__ = ("_key", "_fn")

    def __init__(self, key, fn):
        self._key = key
        self._fn = fn

    def name(self):
        return self._key

    def execute(self, ctx):
        self._fn(ctx)

    def __repr__(self):
        return "<go_func task %r: %r>" % (self._key, self._fn)


class _Entry:
    """The manager's record of one accepted task, from ``go`` until it is gone."""

    __slots__ = (
        "task",
        "name",
        "sched",
        "status",
        "worker",
        "restarts",
        "last_error",
        "queued_at",
        "run_started",
        "restart_times",
        "consecutive",
        "timer",
        "restart",
        "progress",
        "description",
    )

    def __init__(self, task, name, sched, queued_at):
        self.task = task
        self.name = name
        self.sched = sched
        self.status = WorkerStatus.NOT_ASSIGNED
        self.worker = 0
        self.restarts = 0
        self.last_error = None
        self.queued_at = queued_at
        self.run_started = None
        self.restart_times = None
        self.consecutive = 0
        self.timer = None
        # Looked up once: Go's interfaces are structural, so a task need not
        # declare IRestartableTask / ITaskWithProgress to be treated as one.
        self.restart = _callable_attr(task, "restart")
        self.progress = _callable_attr(task, "progress")
        self.description = _callable_attr(task, "description")


class _Worker:
    """One worker greenlet: idle while ``task`` is None, otherwise running that `_Entry`."""

    __slots__ = ("id", "greenlet", "wakeup", "task")

    def __init__(self, worker_id):
        self.id = worker_id
        self.greenlet = None
        self.wakeup = Event()
        self.task = None
