"""
The per-worker snapshot a :class:`~greenworks.runner.Runner` reports.

Kept apart from ``runner.py`` so the status vocabulary (states and the frozen
record) can be read, and imported by status pages, on its own.
"""

import dataclasses
import enum

__all__ = ["WorkerState", "WorkerStatus"]


class WorkerState(enum.Enum):
    """Where one worker of a `~greenworks.runner.Runner` is in its life.

    ``STARTING`` (spawned; ``run`` not called yet, e.g. waiting for an older
    worker of an equal task to end) -> ``RUNNING`` -> ``STOPPING`` (its
    context was cancelled, ``run`` has not returned) -> one of ``EXITED``
    (``run`` returned), ``FAILED`` (``new_worker`` or ``run`` raised; see
    ``error``) or ``KILLED`` (ended by ``GreenletExit``, e.g. after
    ``stop_timeout``). A worker may skip ``STOPPING`` when ``run`` returns by
    itself.
    """

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"
    FAILED = "failed"
    KILLED = "killed"


@dataclasses.dataclass(frozen=True)
class WorkerStatus:
    """An immutable snapshot of one worker, as returned by ``Runner.status()``.

    :ivar task: the tracked task object (the first one applied).
    :ivar worker: what ``new_worker(task)`` returned, or None if it raised.
    :ivar WorkerState state: the state when the snapshot was taken.
    :ivar started_at: aware ``datetime`` (runner's clock) when ``run`` was called, or None.
    :ivar exited_at: aware ``datetime`` when it ended, or None while alive.
    :ivar error: the exception ``new_worker`` or ``run`` raised, or None.
    """

    __slots__ = ("task", "worker", "state", "started_at", "exited_at", "error")

    task: object
    worker: object
    state: WorkerState
    started_at: object
    exited_at: object
    error: object

    @property
    def alive(self):
        """Whether the worker's greenlet has not ended yet."""
        return self.state in (WorkerState.STARTING, WorkerState.RUNNING, WorkerState.STOPPING)

    def as_dict(self):
        """Return this snapshot as JSON-serialisable plain data (reprs and ISO-8601 strings)."""
        return {
            "task": repr(self.task),
            "state": self.state.value,
            "started_at": None if self.started_at is None else self.started_at.isoformat(),
            "exited_at": None if self.exited_at is None else self.exited_at.isoformat(),
            "error": None if self.error is None else repr(self.error),
        }
