"""
What a :class:`~greenworks.jobs.JobRunner` reports: per-job and per-tick
results, the bounded results stream, and the batch record the runner fills on
the way to a Result.
"""

import collections
import dataclasses
import datetime
import queue
import typing
from collections.abc import Callable, Iterator

from gevent.event import Event

from greenworks import _checks
from greenworks.clock import ClockLike
from greenworks.exceptions import PanicError

__all__ = ["JobResult", "Result", "ResultStream"]


@dataclasses.dataclass(slots=True)
class JobResult:
    """The outcome of one job on one due time.

    :ivar str id: the job's id.
    :ivar value: what ``run()`` returned; ``None`` when ``error`` is set.
    :ivar error: ``None``, a `PanicError` (``run()`` raised), the exception
        ``run()`` returned, a `SkippedDuplicateError` (the job was still in
        flight), a `ShuttingDownError` (stopped before it started), or the
        exception raised by the job's ``is_run``/``get_id``.
    :ivar datetime started_at: when ``run()`` began (aware).
    :ivar datetime ended_at: when it ended; equal to ``started_at`` for a job
        that was not run.
    """

    id: str
    value: typing.Any = None
    error: BaseException | None = None
    started_at: datetime.datetime | None = None
    ended_at: datetime.datetime | None = None
    #: position of the job in its tick's input (used for ``input_order``).
    index: int = dataclasses.field(default=0, repr=False, compare=False)


class Result:
    """The aggregated outcome of one tick or one ``push_and_await`` batch.

    :ivar datetime at: the time the jobs' ``is_run`` was asked about.
    :ivar list items: `JobResult` per job, in completion order (skips and
        shutdown entries as they happen), or input order with ``input_order=True``.
    :ivar datetime started_at: when the batch began.
    :ivar datetime ended_at: when its last job ended.

    A runner's Result makes its ``items`` on first access: a Result waiting
    unread in the stream then holds a few lists rather than a thousand
    JobResults. Objects that live that long reach the collector's oldest
    generation and make full collections (tens of ms with a large heap,
    landing on whichever tick allocates next) frequent.
    """

    __slots__ = ("at", "started_at", "ended_at", "_items", "_build")

    def __init__(
        self,
        at: datetime.datetime,
        items: list[JobResult] | None,
        started_at: datetime.datetime | None = None,
        ended_at: datetime.datetime | None = None,
    ) -> None:
        self.at = at
        self.started_at = started_at
        self.ended_at = ended_at
        self._items = items
        self._build: Callable[[], list[JobResult]] | None = None

    @classmethod
    def _deferred(
        cls,
        at: datetime.datetime,
        build: Callable[[], list[JobResult]],
        started_at: datetime.datetime,
        ended_at: datetime.datetime,
    ) -> "Result":
        """A Result whose ``items`` is ``build()``, called once, on first access."""
        result = cls(at, None, started_at, ended_at)
        result._build = build
        return result

    @property
    def items(self) -> list[JobResult]:
        """The `JobResult` of every job of the batch (see the class docstring)."""
        build = self._build
        if build is not None:
            self._build = None
            self._items = build()
        return self._items if self._items is not None else []

    @items.setter
    def items(self, items: list[JobResult]) -> None:
        self._build = None
        self._items = items

    def by_id(self) -> dict[str, JobResult]:
        """Return ``{id: JobResult}``; the last item wins for a repeated id."""
        return {item.id: item for item in self.items}

    def errors(self) -> dict[str, BaseException]:
        """Return ``{id: error}`` for every item with an error, skips included."""
        return {item.id: item.error for item in self.items if item.error is not None}

    def panic_errors(self) -> dict[str, PanicError]:
        """Return ``{id: PanicError}`` for the items whose ``run()`` raised."""
        return {item.id: item.error for item in self.items if isinstance(item.error, PanicError)}

    def _key(self) -> tuple[typing.Any, ...]:
        return (self.at, self.items, self.started_at, self.ended_at)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a mutable value with __eq__ is

    def __repr__(self) -> str:
        return "Result(at=%r, items=%r, started_at=%r, ended_at=%r)" % self._key()


class ResultStream:
    """The bounded stream of Results, newest kept.

    ``put`` never blocks: when *maxsize* Results wait, the oldest is dropped
    and counted. Iterating yields Results as they come, in the order they
    were put, and ends once the stream is closed (by ``JobRunner.wait()``)
    and drained. Several consumers may read; each Result goes to one of them.
    """

    __slots__ = ("_items", "_maxsize", "_ready", "_closed", "_clock", "dropped")

    def __init__(self, maxsize: int, clock: ClockLike) -> None:
        self._items: collections.deque[Result] = collections.deque()
        self._maxsize = maxsize
        self._ready = Event()
        self._closed = False
        self._clock = clock
        #: Results dropped because the stream was full (or already closed).
        self.dropped = 0

    @property
    def maxsize(self) -> int:
        """How many Results the stream keeps (int, read-only)."""
        return self._maxsize

    @property
    def closed(self) -> bool:
        """Whether ``wait()`` closed the stream (bool, read-only)."""
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def put(self, result: Result) -> None:
        """Append *result*, dropping the oldest if full; a closed stream drops *result*."""
        if self._closed:
            self.dropped += 1
            return
        items = self._items
        while len(items) >= self._maxsize:
            items.popleft()
            self.dropped += 1
        items.append(result)
        self._ready.set()

    def close(self) -> None:
        """End iteration once the Results already queued are consumed. Idempotent."""
        self._closed = True
        self._ready.set()

    def get(self, block: bool = True, timeout: float | None = None) -> Result:
        """Remove and return the oldest Result.

        Blocks (up to *timeout* seconds on the runner's clock) while empty.

        :raises queue.Empty: nothing arrived in time, or the stream is closed and empty.
        """
        items = self._items
        timeout = _checks.seconds("timeout", timeout, none=True, negative=True)
        deadline: float | None = None
        while not items:
            if self._closed or not block:
                raise queue.Empty
            self._ready.clear()
            if timeout is None:
                self._clock.wait(self._ready)
                continue
            if deadline is None:
                deadline = self._clock.monotonic() + timeout
            remaining = deadline - self._clock.monotonic()
            if (remaining <= 0 or not self._clock.wait(self._ready, remaining)) and not items:
                raise queue.Empty
        return items.popleft()

    def get_nowait(self) -> Result:
        """``get(block=False)``."""
        return self.get(block=False)

    def __iter__(self) -> Iterator[Result]:
        while True:
            try:
                yield self.get()
            except queue.Empty:
                return


class _Batch:
    """The due jobs of one tick (or one push_and_await) on their way to a Result.

    Jobs are kept in parallel lists indexed by position (not a tuple or object
    per job), and outcomes written into them, so starting jobs allocates
    nothing the garbage collector tracks: a full collection (tens of ms with
    a large heap) cannot be triggered by the runner between a tick and its
    last job's start. The JobResults are made once every job finished.
    """

    __slots__ = (
        "at",
        "jobs",
        "ids",
        "indices",
        "items",
        "reply",
        "pending",
        "done",
        "handed",
        "finished",
        "values",
        "errors",
        "started",
        "ended",
        "delay",
    )

    def __init__(
        self,
        at: datetime.datetime,
        jobs: list[typing.Any],
        ids: list[str],
        indices: list[int],
        items: list[JobResult],
        reply: typing.Any = None,
    ) -> None:
        self.at = at
        self.delay = 0.0  # seconds to wait before the first job starts (jitter)
        # The due jobs, in input order; None once the Result is made (a list, but
        # typed Any: the workers index it on the hot path without a None check).
        self.jobs: typing.Any = jobs
        self.ids = ids  # their ids
        self.indices = indices  # their positions in the input (for input_order)
        self.items = items  # JobResults of is_run/get_id errors
        self.reply = reply
        self.pending = 1  # jobs handed to workers and not finished, + 1 while walking
        self.done: typing.Any = None  # Event, made only if the walk must wait for jobs
        self.handed: collections.deque[int] = (
            collections.deque()
        )  # positions queued for the workers, in order
        self.finished: list[int] = []  # positions with an outcome, in completion order
        n = len(jobs)
        self.values: list[typing.Any] = [None] * n
        self.errors: list[BaseException | None] = [None] * n
        self.started = [0.0] * n  # clock.time() floats
        self.ended = [0.0] * n

    def finish(
        self, position: int, value: typing.Any, error: BaseException | None, started: float, ended: float
    ) -> None:
        self.values[position] = value
        self.errors[position] = error
        self.started[position] = started
        self.ended[position] = ended
        self.finished.append(position)

    def job_results(self, tz: datetime.tzinfo | None, input_order: bool = False) -> list[JobResult]:
        """Return the items, then a `JobResult` per finished job in completion order, in zone *tz*."""
        fromtimestamp = datetime.datetime.fromtimestamp
        items = self.items
        for position in self.finished:
            started, ended = self.started[position], self.ended[position]
            started_at = fromtimestamp(started, tz)
            ended_at = started_at if ended == started else fromtimestamp(ended, tz)
            items.append(
                JobResult(
                    self.ids[position],
                    self.values[position],
                    self.errors[position],
                    started_at,
                    ended_at,
                    self.indices[position],
                )
            )
        if input_order:
            items.sort(key=_index)
        return items


def _index(item: JobResult) -> int:
    return item.index
