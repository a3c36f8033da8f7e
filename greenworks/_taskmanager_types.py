"""
Value types of the TaskManager (states, status snapshots, the schedule handle)
and the private per-task and per-worker records it keeps.

The public types are re-exported by :mod:`greenworks.taskmanager`; import
them from there.
"""

import collections
import datetime
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gevent.event import AsyncResult, Event
from zope.interface import implementer

from greenworks.clock import TimerHandleLike
from greenworks.interfaces import IManagedTask

__all__ = ["FailedTask", "Scheduled", "TaskState", "TaskStatus", "WorkerInfo", "WorkerStatus"]


class TaskState(str, enum.Enum):
    """The state of a worker or of a task.

    A worker is WAITING (idle, shown as task name ``"idle"``) or RUNNING.
    A task is NOT_ASSIGNED (queued), RUNNING, or RESTARTED (failed, its
    restart accepted, waiting out the restart backoff before it is queued
    again).
    """

    NOT_ASSIGNED = "not assigned"
    WAITING = "waiting"
    RUNNING = "running"
    RESTARTED = "restarted"

    def __str__(self) -> str:
        return self.value


#: Deprecated name of `TaskState`.
WorkerStatus = TaskState


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What one worker is doing: ``WorkerInfo("idle", TaskState.WAITING)`` when idle."""

    task_name: str
    status: TaskState


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """A snapshot of one pending, running or restarting task.

    :ivar str name: the task's name.
    :ivar int worker: the id of the worker running it, 0 while not assigned.
    :ivar TaskState status: NOT_ASSIGNED, RUNNING or RESTARTED.
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
    status: TaskState
    description: str = ""
    progress: float = 0.0
    restarts: int = 0
    last_error: BaseException | None = None
    started_at: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class FailedTask:
    """A task that failed for good: not restartable (or ``restart()`` said no), or over ``max_restarts``.

    :ivar str name: the task's name (free to be submitted again).
    :ivar int restarts: restarts it had before it failed for good.
    :ivar last_error: the exception of its last run.
    :ivar failed_at: aware UTC ``datetime`` of the decision.
    """

    name: str
    restarts: int
    last_error: BaseException | None
    failed_at: datetime.datetime


class _Outcome(Protocol):
    """What Scheduled uses of its gevent ``AsyncResult`` (gevent is untyped to mypy)."""

    exception: BaseException | None

    def ready(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> object: ...

    def get(self, block: bool = True, timeout: float | None = None) -> None: ...

    def set(self, value: None) -> None: ...

    def set_exception(self, exception: BaseException) -> None: ...


class Scheduled(Event):  # type: ignore[misc]  # gevent.event.Event is untyped (Any) to mypy
    """The handle ``TaskManager.go`` returns: a gevent ``Event`` set once scheduled, plus the outcome.

    As an Event it is set exactly once: when a worker picked the task up
    (``assigned`` is True and ``worker`` its id), or when ``stop()`` dropped
    the task before any worker took it (``assigned`` is False), so a
    greenlet waiting on it never hangs. Before that, ``assigned`` is None and
    ``worker`` 0.

    The outcome, known once the task is done for good (succeeded, failed
    without a restart, given up after ``max_restarts``, dropped or killed by
    ``stop()``): :meth:`join` waits for it, :meth:`done` tells whether it is
    known, :meth:`result` returns None or raises the task's error (`Canceled`
    for a dropped or killed task), and :attr:`exception` is that error.
    """

    __slots__ = ("assigned", "worker", "_outcome")

    def __init__(self) -> None:
        super().__init__()
        self.assigned: bool | None = None
        self.worker = 0
        self._outcome: _Outcome = AsyncResult()

    def done(self) -> bool:
        """Whether the task's outcome is known. Never blocks."""
        return self._outcome.ready()

    def join(self, timeout: float | None = None) -> bool:
        """Block until the outcome is known or *timeout* (real seconds) passed; return ``done()``."""
        self._outcome.wait(timeout)
        return self._outcome.ready()

    def result(self, timeout: float | None = None) -> None:
        """Block until the outcome is known; return None on success, raise the task's error otherwise.

        :raises gevent.Timeout: *timeout* (real seconds) passed first.
        """
        return self._outcome.get(timeout=timeout)  # None: _finish only ever sets None

    @property
    def exception(self) -> BaseException | None:
        """The task's final error, or None (also while it is not done)."""
        return self._outcome.exception

    def _finish(self, error: BaseException | None) -> None:
        if self._outcome.ready():
            return
        if error is None:
            self._outcome.set(None)
        else:
            self._outcome.set_exception(error)

    def __repr__(self) -> str:
        return "<greenworks.taskmanager.Scheduled assigned=%r worker=%d done=%s>" % (
            self.assigned,
            self.worker,
            self.done(),
        )


_IDLE = WorkerInfo("idle", TaskState.WAITING)


# -- private records and argument checks -----------------------------------------


def _callable_attr(obj: object, attr: str) -> Callable[..., Any] | None:
    method = getattr(obj, attr, None)
    return method if callable(method) else None


@implementer(IManagedTask)
class _FuncTask:
    """Default implementation of `IManagedTask` wrapping ``fn(ctx)`` under a name."""

    __slots__ = ("_key", "_fn")

    def __init__(self, key: str, fn: Callable[[Any], object]) -> None:
        self._key = key
        self._fn = fn

    def name(self) -> str:
        return self._key

    def execute(self, ctx: Any) -> None:
        self._fn(ctx)

    def __repr__(self) -> str:
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

    def __init__(self, task: Any, name: str, sched: Scheduled, queued_at: float) -> None:
        self.task = task
        self.name = name
        self.sched = sched
        self.status = TaskState.NOT_ASSIGNED
        self.worker = 0
        self.restarts = 0
        self.last_error: BaseException | None = None
        self.queued_at = queued_at
        self.run_started: float | None = None
        self.restart_times: collections.deque[float] | None = None
        self.consecutive = 0
        self.timer: TimerHandleLike | None = None
        # Looked up once, structurally (duck typing): a task need not
        # declare IRestartableTask / ITaskWithProgress to be treated as one.
        self.restart = _callable_attr(task, "restart")
        self.progress = _callable_attr(task, "progress")
        self.description = _callable_attr(task, "description")
