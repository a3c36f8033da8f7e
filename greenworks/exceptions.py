"""
The whole error hierarchy of greenworks.

Every error derives from :class:`GreenworksError`, and each one also derives
from the builtin it refines, so ``except KeyError`` or ``except ValueError``
keeps working in code that has never heard of greenworks.

This module imports nothing from its siblings.
"""

import concurrent.futures

__all__ = [
    "BrokenExecutorError",
    "Canceled",
    "ContextError",
    "DeadlineExceeded",
    "EmptyStackError",
    "GreenworksError",
    "InvalidArgument",
    "InvalidScheduleError",
    "JobExistsError",
    "JobLookupError",
    "LockError",
    "ManagerStoppedError",
    "PanicError",
    "ReentrantStopError",
    "RestartIntensityExceeded",
    "RunnerClosedError",
    "ShuttingDownError",
    "SkippedDuplicateError",
    "StopTimeoutError",
    "SupervisorError",
    "TaskAlreadyExistsError",
    "TaskGroupError",
    "TaskKilledError",
    "WorkerExitedPrematurely",
    "invalid_argument",
]


class GreenworksError(Exception):
    """The root of every error greenworks raises."""


class InvalidArgument(GreenworksError, ValueError):
    """An argument has a value the callee cannot accept.

    The message names the argument and repeats the value received.
    """


def invalid_argument(name: str, value: object, expected: str) -> InvalidArgument:
    """Return an :class:`InvalidArgument` that names *name* and *value*.

    :param str name: the parameter name as the caller spelled it.
    :param value: what the caller passed.
    :param str expected: what would have been accepted, e.g. ``"an int >= 0"``.
    """
    return InvalidArgument("%s must be %s, got %r" % (name, expected, value))


class ReentrantStopError(GreenworksError, RuntimeError):
    """``stop()`` was called from one of the component's own greenlets.

    Such a stop would wait for the very greenlet making the call. Stop the
    component from elsewhere, or ask another greenlet to do it.
    """


# -- Context ------------------------------------------------------------------


class ContextError(GreenworksError):
    """Why a :class:`~greenworks.context.Context` is done."""


class Canceled(ContextError):
    """The context was cancelled."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("context canceled",)))


class DeadlineExceeded(ContextError, TimeoutError):
    """The context's deadline passed.

    Deliberately *not* a :class:`Canceled`: supervisors restart work that ran
    out of time but never work that was cancelled.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("context deadline exceeded",)))


# -- Runner -------------------------------------------------------------------


class RunnerClosedError(GreenworksError, RuntimeError):
    """``apply_tasks`` was called after ``stop()``."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("Runner is closed",)))


# -- Dispatcher ---------------------------------------------------------------


class EmptyStackError(GreenworksError, IndexError):
    """``pop()`` or ``peek()`` on an empty :class:`~greenworks.dispatcher.TaskStack`."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("stack is empty",)))


# -- TaskManager --------------------------------------------------------------


class TaskAlreadyExistsError(GreenworksError, KeyError):
    """A task with the same name is pending or running."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("task with same name already exists",)))

    def __str__(self) -> str:
        # KeyError.__str__ would quote the message like a missing key.
        return str(self.args[0]) if self.args else ""


class ManagerStoppedError(GreenworksError, RuntimeError):
    """A task was submitted to a TaskManager after ``stop()``."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("taskmanager is stopped",)))


class StopTimeoutError(GreenworksError, TimeoutError):
    """Workers outlived the timeout given to ``stop()``."""


# -- JobRunner ----------------------------------------------------------------


class PanicError(GreenworksError):
    """A job's ``run()`` raised.

    :ivar str id: the job's id.
    :ivar recovered: the exception ``run()`` raised; also ``__cause__``.
    :ivar str stack: the formatted traceback of that exception.
    """

    def __init__(self, id: str, recovered: object, stack: str = "") -> None:
        super().__init__(id, recovered, stack)
        self.id = id
        self.recovered = recovered
        self.stack = stack
        if isinstance(recovered, BaseException):
            self.__cause__ = recovered

    def __str__(self) -> str:
        return 'runner: job "%s" panicked: %s' % (self.id, self.recovered)


class SkippedDuplicateError(GreenworksError):
    """With dedupe on, a job was not run because its id was already in flight."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("runner: skipped duplicate in-flight job",)))


class ShuttingDownError(GreenworksError):
    """A job was not started because ``stop()`` came while it waited for a slot."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("runner: shutting down before job started",)))


class JobExistsError(GreenworksError, KeyError):
    """``JobRunner.add_job`` of an id the runner has already (pass ``replace_existing=True``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job id already exists"


class JobLookupError(GreenworksError, KeyError):
    """A JobRunner has no job with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such job"


class InvalidScheduleError(InvalidArgument):
    """A schedule expression (cron or interval) cannot be parsed."""


# -- runutil ------------------------------------------------------------------


class WorkerExitedPrematurely(GreenworksError):
    """A worker returned before anything cancelled it."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("worker exited prematurely",)))


# -- Coordination -------------------------------------------------------------


class LockError(GreenworksError, RuntimeError):
    """A leader lock could not be used (backend unreachable, misuse)."""


# -- executor, task groups, supervisors (exec) --------------------------------


class BrokenExecutorError(GreenworksError, concurrent.futures.BrokenExecutor):
    """A `GreenExecutor`'s initializer failed: the executor runs nothing more.

    The counterpart of ``concurrent.futures.thread.BrokenThreadPool``: every
    future not started yet gets it, and so does every later ``submit()``.
    """


class TaskKilledError(GreenworksError, concurrent.futures.CancelledError):
    """A `GreenExecutor` task was killed while running (``stop(timeout)`` ran out of time).

    A ``CancelledError``, since the work was abandoned; the future is
    finished with it rather than marked cancelled, because it had started.
    """


class TaskGroupError(GreenworksError, RuntimeError):
    """A task group was misused: spawning into a closed group, ``started()`` twice, or
    a ``start()`` child that returned without calling ``task_status.started()``."""


class SupervisorError(GreenworksError, RuntimeError):
    """A supervisor cannot do what was asked (e.g. ``stop()`` of one that runs under a parent)."""


class RestartIntensityExceeded(SupervisorError):
    """A supervisor saw more than ``max_restarts`` restarts within ``period`` seconds and gave up.

    Its children were stopped. Under a parent supervisor this is the child's
    failure (the parent's strategy applies); at the root it is the end.

    :ivar str supervisor: the name of the supervisor that gave up.
    :ivar int max_restarts: the restarts it allowed within the period.
    :ivar float period: the period, in seconds.
    :ivar str child: the name of the child whose exit was one too many.
    """

    def __init__(
        self, supervisor: str, max_restarts: int, period: float, child: str, error: object = None
    ) -> None:
        super().__init__(supervisor, max_restarts, period, child)
        self.supervisor = supervisor
        self.max_restarts = max_restarts
        self.period = period
        self.child = child
        if isinstance(error, BaseException):
            self.__cause__ = error

    def __str__(self) -> str:
        return "supervisor %r: more than %d restarts within %ss (last: child %r); gave up" % (
            self.supervisor,
            self.max_restarts,
            self.period,
            self.child,
        )


# -- streams ------------------------------------------------------------------


class NoCurrentMessageError(GreenworksError, LookupError):
    """``greenworks.streams.current_message()`` was called outside a stream handler."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("no stream message is being handled in this greenlet",)))


__all__ += ["NoCurrentMessageError"]
# -- end streams --------------------------------------------------------------
