"""
JobRunner: periodic jobs on wall-clock ticks, with a global concurrency
limit, dedupe, panic capture and stats (a port of Sotaneum/go-runner).

Usage::

    r = JobRunner(limit=10, dedupe=True)
    r.set_jobs([job("report", send_report, Cron("0 8 * * *")),
                job("sweep", sweep, Every(minutes=5))])
    for result in r.results:        # one Result per tick that ran something
        log(result.errors())

The pipeline, and how it differs from the Go original:

- A tick greenlet sleeps (through the clock) until the next multiple of
  ``tick`` seconds of wall-clock time, measured against absolute deadlines,
  so ticks never drift. If the hub was busy past several boundaries, the
  next tick runs once and the boundaries skipped are counted
  (``missed_ticks_total``) and logged.
- On each tick it evaluates the standing set (:meth:`JobRunner.set_jobs`,
  beyond Go) and takes **at most one** pushed batch from the FIFO (the seed's
  behaviour: a batch is used up by its tick). Each job's ``is_run(now)`` is
  asked with *now* = the tick time in ``timezone``; with ``tick`` a whole
  number of minutes that is second 0 of the minute (Go cuts to the minute).
  The due jobs of one tick become one batch and one :class:`Result`.
- A batch greenlet walks its jobs in input order: dedupe, wait for one of the
  ``limit`` slots shared by every batch (unless ``stop()`` came first: then
  ``ErrShuttingDown``, deterministically), then hands the job to a worker.
  At most ``limit`` worker greenlets exist, shared by every batch and never
  one per job: jobs that do not block run back to back on one worker, a job
  that blocks keeps its worker and the next job gets another. A worker is
  named ``greenworks.jobs[<id>]`` while it runs a job (so
  ``gevent.util.format_run_info()`` shows what runs), and workers end once
  no batch is live. Job timestamps are read as floats and made into
  datetimes after the batch, off the path that starts jobs.
- Results go to :attr:`JobRunner.results`, which keeps the newest
  ``results_buffer`` Results and drops (and counts) the oldest.
- With a ``leader`` lock, only the process holding it runs the tick's jobs,
  and each due job is claimed as ``"<id>@<tick UTC iso>"`` first, so a job
  runs at most once per tick across processes.

``push`` puts straight into the FIFO, so exactly ``batch_buffer`` batches
are accepted before it blocks (Go lets one more through, held by its ingest
goroutine). Batches fed through ``source=`` pass through an ingest greenlet
that, like Go's, holds one batch while the FIFO is full.
"""

import collections
import datetime
import logging
import math

from gevent import getcurrent
from gevent.event import AsyncResult, Event
from zope.interface import implementer

from greenworks import _greenlets
from greenworks._checks import is_int, is_real
from greenworks._jobs_results import JobResult, Result, ResultStream, Stats, _Batch
from greenworks._jobs_workers import _BatchWorkers
from greenworks._schedules import Cron, Every, Job, job
from greenworks.clock import get_clock
from greenworks.exceptions import (
    ErrShuttingDown,
    ErrSkippedDuplicate,
    InvalidScheduleError,
    PanicError,
    ShuttingDownError,
    SkippedDuplicateError,
    invalid_argument,
)
from greenworks.interfaces import IJobRunner, ILeaderLock, IStatusSource

__all__ = [
    "Cron",
    "ErrShuttingDown",
    "ErrSkippedDuplicate",
    "Every",
    "InvalidScheduleError",
    "Job",
    "JobResult",
    "JobRunner",
    "PanicError",
    "Result",
    "ShuttingDownError",
    "SkippedDuplicateError",
    "Stats",
    "job",
]

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
DEFAULT_BATCH_BUFFER = 64
DEFAULT_RESULTS_BUFFER = 8

_US = 1000000


def _check_jobs(name, jobs):
    try:
        jobs = list(jobs)
    except TypeError:
        raise invalid_argument(name, jobs, "an iterable of jobs (get_id, is_run, run)") from None
    for index, item in enumerate(jobs):
        if not all(callable(getattr(item, attr, None)) for attr in ("get_id", "is_run", "run")):
            raise invalid_argument("%s[%d]" % (name, index), item, "a job with get_id(), is_run(now), run()")
    return jobs


@implementer(IJobRunner, IStatusSource)
class JobRunner(_BatchWorkers):
    """Default implementation of `IJobRunner` (and `IStatusSource`).

    Starts its tick greenlet (and the ingest greenlet with *source*) at
    construction, as Go's constructors do; call :meth:`stop_and_wait` to end it.

    :param source: optional queue (anything with a blocking ``get()``, e.g.
        ``gevent.queue.Queue``) the caller feeds with batches; the seed's
        ``runnerCh``. Putting ``StopIteration`` on it ends the ingest greenlet.
    :param int limit: jobs running at once across all batches; ``<= 0`` means 50.
    :keyword bool dedupe: skip a job whose id is in flight (``ErrSkippedDuplicate``).
    :keyword int batch_buffer: FIFO size for pushed batches; ``< 1`` means 1.
    :keyword on_panic: ``on_panic(id, exc, stack)`` when a ``run()`` raised; runs
        in the worker greenlet that ran the job, which holds its slot until
        ``on_panic`` returns; its own exceptions are logged and ignored.
    :keyword on_skip: ``on_skip(id)`` for a dedupe skip, in the batch greenlet.
    :keyword int results_buffer: Results :attr:`results` keeps (>= 1).
    :keyword float tick: seconds between ticks (> 0); boundaries are multiples
        of it in wall-clock time.
    :keyword tzinfo timezone: zone of the *now* given to ``is_run``; ``None`` is
        the clock's zone (local time for the real clock, UTC for a FakeClock).
    :keyword bool input_order: order ``Result.items`` like the input instead of by completion.
    :keyword ILeaderLock leader: run jobs only while holding this lease; ``None``: always.
    :keyword float leader_ttl: lease and claim ttl; default ``max(2 * tick, 1.0)``.
    :keyword str name: shown in greenlet names, logs and :meth:`snapshot`.
    :raises InvalidArgument: for any argument of the wrong type or range.
    """

    def __init__(
        self,
        source=None,
        limit=DEFAULT_LIMIT,
        *,
        dedupe=False,
        batch_buffer=DEFAULT_BATCH_BUFFER,
        on_panic=None,
        on_skip=None,
        results_buffer=DEFAULT_RESULTS_BUFFER,
        tick=60.0,
        timezone=None,
        input_order=False,
        leader=None,
        leader_ttl=None,
        name="jobs",
        clock=None,
        logger=None,
    ):
        if source is not None and not callable(getattr(source, "get", None)):
            raise invalid_argument("source", source, "None or a queue with a blocking get()")
        if not is_int(limit):
            raise invalid_argument("limit", limit, "an int (<= 0 means %d)" % DEFAULT_LIMIT)
        if not is_int(batch_buffer):
            raise invalid_argument("batch_buffer", batch_buffer, "an int (< 1 means 1)")
        if not is_int(results_buffer) or results_buffer < 1:
            raise invalid_argument("results_buffer", results_buffer, "an int >= 1")
        if not is_real(tick) or not 0 < tick < math.inf:
            raise invalid_argument("tick", tick, "a number of seconds > 0")
        tick_us = round(tick * _US)
        if tick_us < 1000:
            raise invalid_argument("tick", tick, "at least 0.001 seconds")
        if timezone is not None and not isinstance(timezone, datetime.tzinfo):
            raise invalid_argument("timezone", timezone, "a datetime.tzinfo or None")
        for arg, value in (("on_panic", on_panic), ("on_skip", on_skip)):
            if value is not None and not callable(value):
                raise invalid_argument(arg, value, "a callable or None")
        if leader is not None and not ILeaderLock.providedBy(leader):
            raise invalid_argument("leader", leader, "an ILeaderLock or None")
        if leader_ttl is None:
            leader_ttl = max(2.0 * tick, 1.0)
        elif not is_real(leader_ttl) or not leader_ttl > 0:
            raise invalid_argument("leader_ttl", leader_ttl, "a number of seconds > 0 or None")
        if not isinstance(name, str) or not name:
            raise invalid_argument("name", name, "a non-empty str")

        self._utc = datetime.timezone.utc
        self.name = name
        self.tick = float(tick)
        self._tick_us = tick_us
        self.limit = limit if limit > 0 else DEFAULT_LIMIT
        self.dedupe = bool(dedupe)
        self.batch_buffer = max(1, batch_buffer)
        self._on_panic = on_panic
        self._on_skip = on_skip
        self._timezone = timezone
        self._input_order = bool(input_order)
        self._leader = leader
        self._leader_ttl = float(leader_ttl)
        self._clock = get_clock(clock)
        self._log = logger or globals()["logger"]
        self._source = source

        self._fifo = []  # pushed batches, oldest first
        self._space = Event()  # set whenever the FIFO shrinks (or on stop)
        self._running = 0  # jobs holding a slot
        self._slot = Event()  # set whenever a slot frees (or on stop)
        self._in_flight = set()
        self._standing = []
        self._stats = Stats(batch_queue_capacity=self.batch_buffer)
        self.results = ResultStream(results_buffer, self._clock)
        self._batches = set()  # live batch greenlets
        self._ready = collections.deque()  # a batch per job holding a slot, for the workers
        self._parked = []  # wake Events of idle workers, most recently parked last
        self._workers = 0  # live worker greenlets
        self._waking = 0  # workers woken or spawned that have not looked at _ready yet
        self._worker_seq = 0
        self._idle = Event()  # set while no batch and no worker is live
        self._idle.set()
        self._batch_seq = 0
        self._is_leader = leader is None
        self._last_tick = None
        self._next_index = round(self._clock.time() * _US) // tick_us + 1
        self._stopping = False
        self._stop_event = Event()
        self._stopped = Event()

        self._tick_greenlet = _greenlets.spawn("greenworks.jobs[%s:tick]" % name, self._tick_loop)
        self._ingest_greenlet = None
        self._held = None
        if source is not None:
            self._ingest_greenlet = _greenlets.spawn("greenworks.jobs[%s:ingest]" % name, self._ingest)
        self._log.info(
            "job runner %r started: tick=%ss limit=%d dedupe=%s", name, self.tick, self.limit, self.dedupe
        )

    # -- feeding -------------------------------------------------------------

    def push(self, batch, timeout=None):
        """Queue *batch* (an iterable of jobs) for the next tick.

        Blocks while ``batch_buffer`` batches wait (backpressure), up to
        *timeout* seconds on the clock. Never blocks once stopped.

        :return bool: True if queued; False after ``stop()`` or on timeout
            (the batch was not kept).
        :raises InvalidArgument: if *batch* is not an iterable of jobs.
        """
        batch = _check_jobs("batch", batch)
        return self._enqueue(batch, timeout)

    def _enqueue(self, batch, timeout=None):
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        while not self._stopping and len(self._fifo) >= self.batch_buffer:
            self._space.clear()
            if deadline is None:
                self._clock.wait(self._space)
            elif (
                not self._clock.wait(self._space, deadline - self._clock.monotonic())
                and len(self._fifo) >= self.batch_buffer
            ):
                return False
        if self._stopping:
            return False
        self._fifo.append(batch)
        return True

    def push_and_await(self, batch):
        """Run *batch* now, without waiting for a tick, and return an ``AsyncResult``.

        ``is_run`` is asked once, in the calling greenlet, with the current
        time cut to the tick (to the minute with the default tick). No leader
        check or claim is made: the caller asked for this run explicitly.
        The Result also goes to :attr:`results`. After ``stop()`` the handle
        is already resolved with a `ShuttingDownError` (``get()`` raises it).

        :raises InvalidArgument: if *batch* is not an iterable of jobs.
        """
        batch = _check_jobs("batch", batch)
        reply = AsyncResult()
        if not self._stopping:
            now_us = round(self._clock.time() * _US)
            prepared = self._prepare(self._at(now_us // self._tick_us * self._tick_us), batch, claim=False)
            # is_run is user code and may have switched: stop() may have run meanwhile.
            if not self._stopping:
                prepared.reply = reply
                self._start_batch(prepared)
                return reply
        reply.set_exception(ShuttingDownError("runner: stopped before the batch was accepted"))
        return reply

    def set_jobs(self, jobs):
        """Replace the standing set evaluated on every tick (beyond Go). Never blocks.

        A tick already being evaluated keeps the set it started with.

        :raises InvalidArgument: if *jobs* is not an iterable of jobs.
        """
        self._standing = _check_jobs("jobs", jobs)

    def _ingest(self):
        source = self._source
        while not self._stopping:
            try:
                batch = source.get()
            except Exception:
                # Retrying a broken source would spin; ticks and push() go on.
                self._log.exception("job runner %r: source.get() raised; no longer ingesting", self.name)
                return
            if batch is StopIteration:
                return
            try:
                batch = list(batch)
            except Exception:
                self._log.exception("job runner %r: ignoring a non-iterable batch from source", self.name)
                continue
            self._held = batch  # stop() kills us mid-wait: it counts this one as discarded
            if not self._enqueue(batch):
                self._stats.discarded_batches_total += 1
            self._held = None

    # -- ticking -------------------------------------------------------------

    def _at(self, boundary_us):
        at = datetime.datetime.fromtimestamp(boundary_us // _US, self._utc)
        at += datetime.timedelta(microseconds=boundary_us % _US)
        tz = self._timezone or self._clock.now().tzinfo
        return at.astimezone(tz)

    def _tick_loop(self):
        tick_us = self._tick_us
        while not self._stopping:
            boundary = self._next_index * tick_us
            remaining = boundary - round(self._clock.time() * _US)
            if remaining > 0:
                if self._clock.wait(self._stop_event, remaining / _US):
                    return
                continue  # woken early, or the wall clock moved: recompute
            current = round(self._clock.time() * _US) // tick_us
            missed = current - self._next_index
            if missed > 0:
                self._stats.missed_ticks_total += missed
                self._log.warning(
                    "job runner %r missed %d tick(s): the hub was busy past their boundaries; ran once",
                    self.name,
                    missed,
                )
                self._next_index = current
            index = self._next_index
            self._next_index = index + 1
            try:
                self._run_tick(self._at(index * tick_us))
            except Exception:  # a bug here must not end the ticks
                self._log.exception("job runner %r: tick failed", self.name)

    def _run_tick(self, at):
        self._last_tick = at
        if not self._lead():
            self._stats.not_leader_ticks_total += 1
            self._log.debug("job runner %r: not the leader at %s, no jobs run", self.name, at)
            return
        jobs = list(self._standing)
        popped = bool(self._fifo)
        if popped:
            jobs.extend(self._fifo.pop(0))
            self._space.set()
        if not jobs:
            return
        batch = self._prepare(at, jobs, claim=self._leader is not None)
        if popped or batch.jobs or batch.items:
            self._start_batch(batch)

    def _lead(self):
        """Be the leader this tick, or not; a lock that raises means not."""
        leader = self._leader
        if leader is None:
            return True
        try:
            ok = False
            if self._is_leader and leader.is_held:
                ok = leader.renew()
            if not ok:
                ok = leader.acquire(self._leader_ttl)
            ok = bool(ok)
        except Exception:
            self._log.exception("job runner %r: leader lock failed; not leading this tick", self.name)
            ok = False
        if ok != self._is_leader:
            self._log.info("job runner %r: %s leadership", self.name, "took" if ok else "lost")
        self._is_leader = ok
        return ok

    def _prepare(self, at, jobs, claim):
        runnable = []
        ids = []
        indices = []
        items = []
        for index, item in enumerate(jobs):
            try:
                job_id = item.get_id()
            except Exception as exc:
                self._log.exception("job runner %r: get_id() of %r raised; job not run", self.name, item)
                items.append(JobResult("<%s>" % type(item).__name__, None, exc, at, at, index))
                continue
            try:
                due = item.is_run(at)
            except Exception as exc:
                self._log.exception("job runner %r: is_run() of %r raised; job not run", self.name, job_id)
                items.append(JobResult(job_id, None, exc, at, at, index))
                continue
            if not due:
                continue
            if claim and not self._claim(job_id, at):
                continue
            runnable.append(item)
            ids.append(job_id)
            indices.append(index)
        return _Batch(at, runnable, ids, indices, items)

    def _claim(self, job_id, at):
        key = "%s@%s" % (job_id, at.astimezone(self._utc).isoformat())
        try:
            ok = self._leader.claim(key, self._leader_ttl)
        except Exception:
            self._log.exception("job runner %r: claim %r failed; job not run", self.name, key)
            ok = False
        if not ok:
            self._stats.claim_skips_total += 1
        return bool(ok)

    # -- inspecting ----------------------------------------------------------

    def stats(self):
        """Return a `Stats` snapshot (a new object each call)."""
        s = self._stats
        s.in_flight_jobs = self._running
        s.batch_queue_depth = len(self._fifo)
        s.dropped_results_total = self.results.dropped
        return Stats(**s.as_dict())

    def in_flight_ids(self):
        """Return the sorted ids marked in flight (running or waiting for a slot); ``[]`` without dedupe."""
        return sorted(self._in_flight)

    @property
    def is_leader(self):
        """Whether this runner led its last tick (bool; always True without ``leader``)."""
        return self._is_leader

    def snapshot(self):
        """Return a JSON-serialisable dict describing the runner (for status pages)."""
        ids = []
        for item in list(self._standing):
            try:
                ids.append(str(item.get_id()))
            except Exception:
                ids.append("<%s>" % type(item).__name__)
        next_tick = None
        if not self._stopping:
            next_tick = self._at(self._next_index * self._tick_us).isoformat()
        return {
            "component": "jobs",
            "name": self.name,
            "tick": self.tick,
            "last_tick": self._last_tick.isoformat() if self._last_tick is not None else None,
            "next_tick": next_tick,
            "is_leader": self._is_leader,
            "stats": self.stats().as_dict(),
            "jobs": ids,
        }

    # -- stopping ------------------------------------------------------------

    def stop(self):
        """Stop ticking and ingesting; jobs waiting for a slot get ``ErrShuttingDown``.

        Jobs already running carry on (``wait()`` waits for them). Batches
        still queued are discarded, counted and logged. A held leader lease
        is released. Synchronous and idempotent; a concurrent second call
        returns once the first finished.
        """
        if self._stopping:
            if getcurrent() not in (self._tick_greenlet, self._ingest_greenlet):
                self._clock.wait(self._stopped)
            return
        self._stopping = True
        self._stop_event.set()
        self._space.set()
        self._slot.set()
        current = getcurrent()
        try:
            if self._ingest_greenlet is not None and current is not self._ingest_greenlet:
                self._ingest_greenlet.kill()
            if current is not self._tick_greenlet:
                self._tick_greenlet.join()
            discarded = len(self._fifo) + (self._held is not None)
            self._held = None
            if discarded:
                self._fifo.clear()
                self._stats.discarded_batches_total += discarded
                self._log.warning("job runner %r stopped; dropped %d queued batch(es)", self.name, discarded)
            if self._leader is not None and self._is_leader:
                try:
                    self._leader.release()
                except Exception:
                    self._log.exception("job runner %r: releasing the leader lock failed", self.name)
                self._is_leader = False
        finally:
            self._stopped.set()
        self._log.info("job runner %r stopped", self.name)

    def wait(self, timeout=None):
        """Stop (``wait()`` implies ``stop()``), block until every batch finished, close :attr:`results`.

        Go's ``Wait()`` without ``Stop()`` crashed on the next tick; here no
        tick can come after ``wait()``. Must not be called from a job.

        :return bool: False if *timeout* passed first (results stay open).
        """
        self.stop()
        if not self._clock.wait(self._idle, timeout):
            return False
        self.results.close()
        return True

    def stop_and_wait(self, timeout=None):
        """``stop()`` then ``wait(timeout)``; afterwards no greenlet of this runner is alive.

        :return bool: False if *timeout* passed first.
        """
        self.stop()
        return self.wait(timeout)

    def __repr__(self):
        return "<greenworks.JobRunner %r tick=%ss limit=%d running=%d%s>" % (
            self.name,
            self.tick,
            self.limit,
            self._running,
            " stopped" if self._stopping else "",
        )
