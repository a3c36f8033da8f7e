"""
What a :class:`~greenworks.jobs.JobRunner` reports: per-job and per-tick
results, the stats snapshot, and the bounded results stream.
"""
import collections
import dataclasses
import datetime
import queue
import typing

from gevent.event import Event

from greenworks.exceptions import PanicError

__all__ = ["JobResult", "Result", "ResultStream", "Stats"]


@dataclasses.dataclass(slots=True)
class JobResult:
    """The outcome of one job on one tick (Go's ``JobResult``).

    :ivar str id: the job's id.
    :ivar value: what ``run()`` returned; ``None`` when ``error`` is set.
    :ivar error: ``None``, a `PanicError` (``run()`` raised), the exception
        ``run()`` returned, ``ErrSkippedDuplicate``, ``ErrShuttingDown``, or
        the exception raised by the job's ``is_run``/``get_id``.
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


@dataclasses.dataclass(slots=True)
class Result:
    """The aggregated outcome of one tick or one ``push_and_await`` batch.

    :ivar datetime at: the time the jobs' ``is_run`` was asked about.
    :ivar list items: `JobResult` per job, in completion order (skips and
        shutdown entries as they happen), or input order with ``input_order=True``.
    """

    at: datetime.datetime
    items: list
    started_at: datetime.datetime | None = None
    ended_at: datetime.datetime | None = None

    def by_id(self):
        """Return ``{id: JobResult}``; the last item wins for a repeated id."""
        return {item.id: item for item in self.items}

    def errors(self):
        """Return ``{id: error}`` for every item with an error, sentinels included."""
        return {item.id: item.error for item in self.items if item.error is not None}

    def panic_errors(self):
        """Return ``{id: PanicError}`` for the items whose ``run()`` raised."""
        return {item.id: item.error for item in self.items if isinstance(item.error, PanicError)}


@dataclasses.dataclass
class Stats:
    """A point-in-time snapshot of a JobRunner (Go's ``Stats`` plus counters of its own).

    :ivar int in_flight_jobs: jobs running now (holding a concurrency slot).
    :ivar int batch_queue_depth: pushed batches waiting in the FIFO.
    :ivar int batch_queue_capacity: the FIFO's size (``batch_buffer``).
    :ivar int dedupe_skips_total: jobs reported ``ErrSkippedDuplicate``.
    :ivar int dropped_results_total: Results dropped from the full results stream.
    :ivar int missed_ticks_total: tick boundaries that passed while the hub was busy.
    :ivar int not_leader_ticks_total: ticks on which this process was not the leader.
    :ivar int claim_skips_total: due jobs another process had already claimed.
    :ivar int discarded_batches_total: queued batches dropped by ``stop()``.
    """

    in_flight_jobs: int = 0
    batch_queue_depth: int = 0
    batch_queue_capacity: int = 0
    dedupe_skips_total: int = 0
    dropped_results_total: int = 0
    missed_ticks_total: int = 0
    not_leader_ticks_total: int = 0
    claim_skips_total: int = 0
    discarded_batches_total: int = 0

    def as_dict(self):
        """Return the fields as a plain dict."""
        return dataclasses.asdict(self)


class ResultStream:
    """The bounded stream of Results (Go's ``ResultCh``), newest kept.

    ``put`` never blocks: when *maxsize* Results wait, the oldest is dropped
    and counted. Iterating yields Results as they come, in the order they
    were put, and ends once the stream is closed (by ``JobRunner.wait()``)
    and drained. Several consumers may read; each Result goes to one of them.
    """

    __slots__ = ("_items", "_maxsize", "_ready", "_closed", "_clock", "dropped")

    def __init__(self, maxsize, clock):
        self._items = collections.deque()
        self._maxsize = maxsize
        self._ready = Event()
        self._closed = False
        self._clock = clock
        #: Results dropped because the stream was full (or already closed).
        self.dropped = 0

    @property
    def maxsize(self):
        """How many Results the stream keeps (int, read-only)."""
        return self._maxsize

    @property
    def closed(self):
        """Whether ``wait()`` closed the stream (bool, read-only)."""
        return self._closed

    def __len__(self):
        return len(self._items)

    def put(self, result):
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

    def close(self):
        """End iteration once the Results already queued are consumed. Idempotent."""
        self._closed = True
        self._ready.set()

    def get(self, block=True, timeout=None):
        """Remove and return the oldest Result.

        Blocks (up to *timeout* seconds on the runner's clock) while empty.

        :raises queue.Empty: nothing arrived in time, or the stream is closed and empty.
        """
        items = self._items
        deadline = None
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

    def get_nowait(self):
        """``get(block=False)``."""
        return self.get(block=False)

    def __iter__(self):
        while True:
            try:
                yield self.get()
            except queue.Empty:
                return
