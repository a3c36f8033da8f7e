"""
JobRunner: periodic jobs on wall-clock ticks, with a global concurrency
limit, dedupe, panic capture, stats and leader election.

Usage::

    with JobRunner(limit=10, dedupe=True) as r:
        r.set_jobs([job("report", send_report, Cron("0 8 * * *")),
                    job("sweep", sweep, Every(minutes=5))])
        for result in r.results:        # one Result per tick that ran something
            log(result.errors())

The pipeline:

- A tick greenlet sleeps (through the clock, on the runner's Context) until
  the next multiple of ``tick`` seconds of wall-clock time, measured against
  absolute deadlines, so ticks never drift. If the hub was busy past several
  boundaries, the next tick runs once and the boundaries skipped are counted
  (``missed_ticks_total``), logged and announced (`TicksMissed`).
- On each tick it evaluates the standing set (:meth:`JobRunner.set_jobs`) and
  takes **at most one** pushed batch from the FIFO (a batch is used up by its
  tick). Each job's ``is_run(now)`` is asked with *now* = the tick time in
  ``timezone``; with ``tick`` a whole number of minutes that is second 0 of
  the minute. The due jobs of one tick become one batch and one
  :class:`Result`, run by a `~greenworks._batches.BatchRunner` on shared
  workers, at most ``limit`` at a time.
- Results go to :attr:`JobRunner.results`, which keeps the newest
  ``results_buffer`` Results and drops (and counts) the oldest.
- With a ``leader`` lock only the process holding it runs the tick's jobs,
  and each due job is claimed as ``"<id>@<tick UTC iso>"`` first, so a job
  runs at most once per tick across processes. A fenced lock
  (`~greenworks.interfaces.IFencedLock`) refuses the claims of a stale leader
  (one that was paused past its lease): it then stops leading at once. A lock
  whose backend cannot be reached for 3 ticks in a row is reported once, at
  ERROR, and shown in ``snapshot()["leader_error"]`` until it recovers.

``push`` puts straight into the FIFO, so exactly ``batch_buffer`` batches
are accepted before it blocks. Batches fed through ``source=`` pass through
an ingest greenlet that holds one batch while the FIFO is full.

Differences from the original (Sotaneum/go-runner): ``wait()`` implies
``stop()`` (a later tick can never post to a closed stream), a stop always
wins over a freed slot, a standing set and leader election exist, and
``stop(timeout)`` waits for the jobs and kills what outlives it.
"""

import datetime
import logging
from typing import Any

import zope.event
from gevent.event import AsyncResult, Event
from greenlet import getcurrent
from zope.interface import implementer

from greenworks import _checks
from greenworks._batches import NO_LIMIT, BatchRunner
from greenworks._component import Lifecycle, State, iso
from greenworks._results import JobResult, Result, ResultStream, _Batch
from greenworks._schedules import Cron, Every, Job, job
from greenworks.context import with_cancel
from greenworks.events import JobSkipped, LeadershipAcquired, LeadershipLost, TicksMissed
from greenworks.exceptions import (
    InvalidScheduleError,
    PanicError,
    ShuttingDownError,
    SkippedDuplicateError,
    invalid_argument,
)
from greenworks.interfaces import IJobRunner, ILeaderLock

__all__ = [
    "Cron",
    "Every",
    "InvalidScheduleError",
    "Job",
    "JobResult",
    "JobRunner",
    "PanicError",
    "Result",
    "ShuttingDownError",
    "SkippedDuplicateError",
    "job",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_BUFFER = 64
DEFAULT_RESULTS_BUFFER = 8
#: Consecutive ticks without reaching the leader lock's backend before one ERROR.
LEADER_ERROR_TICKS = 3

_US = 1000000
_UTC = datetime.timezone.utc
# A claim must outlive its tick so no process can claim the same tick again.
_MIN_CLAIM_TTL = 1.0


def _check_jobs(name: str, jobs: Any) -> list[Any]:
    try:
        jobs = list(jobs)
    except TypeError:
        raise invalid_argument(name, jobs, "an iterable of jobs (get_id, is_run, run)") from None
    for index, item in enumerate(jobs):
        if not all(callable(getattr(item, attr, None)) for attr in ("get_id", "is_run", "run")):
            raise invalid_argument("%s[%d]" % (name, index), item, "a job with get_id(), is_run(now), run()")
    return jobs


def _stats() -> dict[str, int]:
    return {
        "in_flight_jobs": 0,
        "batch_queue_depth": 0,
        "batch_queue_capacity": 0,
        "dedupe_skips_total": 0,
        "dropped_results_total": 0,
        "missed_ticks_total": 0,
        "not_leader_ticks_total": 0,
        "claim_skips_total": 0,
        "fenced_claims_total": 0,
        "discarded_batches_total": 0,
    }


@implementer(IJobRunner)
class JobRunner:
    """Default implementation of `IJobRunner`.

    Starts its tick greenlet (and the ingest greenlet with *source*) at
    construction; ``stop()`` (or leaving a ``with`` block) ends it.

    :param source: optional queue (anything with a blocking ``get()``, e.g.
        ``gevent.queue.Queue``) the caller feeds with batches. Putting
        ``StopIteration`` on it ends the ingest greenlet.
    :param limit: jobs running at once across all batches: an int ``>= 1``,
        or ``None`` for no limit (default 50).
    :keyword bool dedupe: skip a job whose id is in flight (`SkippedDuplicateError`).
    :keyword int batch_buffer: FIFO size for pushed batches (``>= 1``).
    :keyword on_panic: ``on_panic(id, exc, stack)`` when a ``run()`` raised; runs
        in the worker greenlet that ran the job, which holds its slot until
        ``on_panic`` returns; its own exceptions are logged and ignored.
    :keyword on_skip: ``on_skip(id)`` for a dedupe skip, in the batch greenlet.
    :keyword int results_buffer: Results :attr:`results` keeps (>= 1).
    :keyword float tick: seconds between ticks (>= 0.001); boundaries are
        multiples of it in wall-clock time.
    :keyword tzinfo timezone: zone of the *now* given to ``is_run``; ``None`` is
        the clock's zone (local time for the real clock, UTC for a FakeClock).
    :keyword bool input_order: order ``Result.items`` like the input instead of by completion.
    :keyword ILeaderLock leader: run jobs only while holding this lease; ``None``: always.
    :keyword float leader_ttl: the lease's ttl; default one ``tick`` (a lock
        that renews itself, like `RedisLock`, is then taken over within a
        tick of its holder's death). Claims live ``max(2 * tick, 1)`` seconds
        at least.
    :keyword str name: shown in greenlet names, logs and :meth:`snapshot`.
    :raises InvalidArgument: for any argument of the wrong type or range.
    """

    def __init__(
        self,
        source: Any = None,
        limit: int | None = 50,
        *,
        dedupe: bool = False,
        batch_buffer: int = DEFAULT_BATCH_BUFFER,
        on_panic: Any = None,
        on_skip: Any = None,
        results_buffer: int = DEFAULT_RESULTS_BUFFER,
        tick: float = 60.0,
        timezone: datetime.tzinfo | None = None,
        input_order: bool = False,
        leader: Any = None,
        leader_ttl: float | None = None,
        name: str = "jobs",
        clock: Any = None,
        logger: Any = None,
    ) -> None:
        if source is not None and not callable(getattr(source, "get", None)):
            raise invalid_argument("source", source, "None or a queue with a blocking get()")
        limit = _checks.count("limit", limit, minimum=1, none=True)
        batch_buffer = _checks.count("batch_buffer", batch_buffer, minimum=1)
        results_buffer = _checks.count("results_buffer", results_buffer, minimum=1)
        tick = _checks.seconds("tick", tick, positive=True)
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
        leader_ttl = _checks.seconds("leader_ttl", leader_ttl, none=True, positive=True)
        self._life = life = Lifecycle(self, "jobs", name, clock, logger, __name__)
        self._clock = life.clock
        self._log = life.logger
        self.name = life.name
        self.tick = tick
        self._tick_us = tick_us
        self._limit = limit
        self.dedupe = bool(dedupe)
        self.batch_buffer = batch_buffer
        self._timezone = timezone
        self._leader = leader
        self._leader_ttl = tick if leader_ttl is None else leader_ttl
        self._claim_ttl = max(self._leader_ttl, 2.0 * tick, _MIN_CLAIM_TTL)
        self._source = source

        self._fifo: list[list[Any]] = []  # pushed batches, oldest first
        self._space = Event()  # set whenever the FIFO shrinks (or on stop)
        self._standing: list[Any] = []
        self._stats = _stats()
        self._stats["batch_queue_capacity"] = batch_buffer
        self.results = ResultStream(results_buffer, self._clock)
        self._batches = BatchRunner(
            life,
            limit=NO_LIMIT if limit is None else limit,
            dedupe=self.dedupe,
            results=self.results,
            stats=self._stats,
            zone=self._zone,
            input_order=bool(input_order),
            on_panic=on_panic,
            on_skip=on_skip,
        )
        self._is_leader = leader is None
        self._leader_failures = 0
        self._leader_error: str | None = None
        self._last_tick: datetime.datetime | None = None
        self._next_index = round(self._clock.time() * _US) // tick_us + 1
        self._stopping = False
        self._ctx = with_cancel(None, clock=self._clock)

        life.started()
        self._tick_greenlet = life.spawn("greenworks.jobs[%s:tick]" % name, self._tick_loop)
        self._ingest_greenlet: Any = None
        self._held: list[Any] | None = None
        if source is not None:
            self._ingest_greenlet = life.spawn("greenworks.jobs[%s:ingest]" % name, self._ingest)
        self._log.info(
            "job runner %r started: tick=%ss limit=%s dedupe=%s", name, self.tick, self._limit, self.dedupe
        )

    # -- reading ---------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._life.state

    @property
    def limit(self) -> int | None:
        """Jobs running at once across all batches, or None for no limit (read-only)."""
        return self._limit

    max_workers = limit

    @property
    def is_leader(self) -> bool:
        """Whether this runner led its last tick (bool; always True without ``leader``)."""
        return self._is_leader

    def _zone(self) -> Any:
        return self._timezone or self._clock.now().tzinfo

    # -- feeding -------------------------------------------------------------

    def push(self, batch: Any, timeout: float | None = None) -> bool:
        """Queue *batch* (an iterable of jobs) for the next tick.

        Blocks while ``batch_buffer`` batches wait (backpressure), up to
        *timeout* seconds on the clock. Never blocks once stopped.

        :return bool: True if queued; False after ``stop()`` or on timeout
            (the batch was not kept).
        :raises InvalidArgument: if *batch* is not an iterable of jobs, or a
            job's schedule cannot fire on this runner's ticks.
        """
        timeout = _checks.seconds("timeout", timeout, none=True, negative=True)
        batch = self._checked("batch", batch)
        return self._enqueue(batch, timeout)

    def _enqueue(self, batch: list[Any], timeout: float | None = None) -> bool:
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        while not self._stopping and len(self._fifo) >= self.batch_buffer:
            self._space.clear()
            if deadline is None:
                clock.wait(self._space)
            elif (
                not clock.wait(self._space, deadline - clock.monotonic())
                and len(self._fifo) >= self.batch_buffer
            ):
                return False
        if self._stopping:
            return False
        self._fifo.append(batch)
        return True

    def push_and_await(self, batch: Any) -> AsyncResult:
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
                self._batches.start_batch(prepared)
                return reply
        reply.set_exception(ShuttingDownError("runner: stopped before the batch was accepted"))
        return reply

    def set_jobs(self, jobs: Any) -> None:
        """Replace the standing set evaluated on every tick. Never blocks.

        A tick already being evaluated keeps the set it started with.

        :raises InvalidArgument: if *jobs* is not an iterable of jobs, or two
            of them share an id.
        :raises InvalidScheduleError: naming the job, if its schedule can
            never fire on this runner's ticks (an ``Every`` period that is not
            a multiple of ``tick``, or an offset off the tick grid).
        """
        jobs = self._checked("jobs", jobs)
        seen: set[Any] = set()
        for item in jobs:
            job_id = item.get_id()
            if job_id in seen:
                raise invalid_argument("jobs", job_id, "unique job ids (this one is listed twice)")
            seen.add(job_id)
        self._standing = jobs

    def _checked(self, name: str, jobs: Any) -> list[Any]:
        jobs = _check_jobs(name, jobs)
        for item in jobs:
            self._check_schedule(item)
        return jobs

    def _check_schedule(self, item: Any) -> None:
        """Refuse a job whose ``Every`` schedule would never, or only sometimes, fall on a tick."""
        schedule = getattr(item, "schedule", None)
        period = getattr(schedule, "period", None)
        if not isinstance(period, (int, float)) or isinstance(schedule, type):
            return
        offset = getattr(schedule, "offset", 0.0) or 0.0
        tick_us = self._tick_us
        period_us = round(period * _US)
        offset_us = round(offset * _US)
        if period_us % tick_us or offset_us % tick_us:
            raise InvalidScheduleError(
                "job %r: schedule %r cannot fire on a %gs tick: its period (%gs) and offset (%gs) must be"
                " multiples of the tick" % (getattr(item, "id", item), schedule, self.tick, period, offset)
            )

    def _ingest(self) -> None:
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
                self._stats["discarded_batches_total"] += 1
            self._held = None

    # -- ticking -------------------------------------------------------------

    def _at(self, boundary_us: int) -> datetime.datetime:
        at = datetime.datetime.fromtimestamp(boundary_us // _US, _UTC)
        at += datetime.timedelta(microseconds=boundary_us % _US)
        return at.astimezone(self._zone())

    def _tick_loop(self) -> None:
        tick_us = self._tick_us
        ctx = self._ctx
        clock = self._clock
        while not self._stopping:
            boundary = self._next_index * tick_us
            remaining = boundary - round(clock.time() * _US)
            if remaining > 0:
                if not ctx.sleep(remaining / _US):
                    return
                continue  # woken early, or the wall clock moved: recompute
            current = round(clock.time() * _US) // tick_us
            missed = current - self._next_index
            if missed > 0:
                self._stats["missed_ticks_total"] += missed
                self._log.warning(
                    "job runner %r missed %d tick(s): the hub was busy past their boundaries; ran once",
                    self.name,
                    missed,
                )
                self._life.emit(TicksMissed, missed)
                self._next_index = current
            index = self._next_index
            self._next_index = index + 1
            try:
                self._run_tick(self._at(index * tick_us))
            except Exception:  # a bug here must not end the ticks
                self._log.exception("job runner %r: tick failed", self.name)

    def _run_tick(self, at: datetime.datetime) -> None:
        self._last_tick = at
        if not self._lead():
            self._stats["not_leader_ticks_total"] += 1
            self._log.debug("job runner %r: not the leader at %s, no jobs run", self.name, at)
            if zope.event.subscribers:
                self._announce_not_leader(at)
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
            self._batches.start_batch(batch)

    def _announce_not_leader(self, at: datetime.datetime) -> None:
        # Only with a subscriber: a follower does not otherwise ask is_run.
        for item in list(self._standing):
            try:
                if item.is_run(at):
                    self._life.emit(JobSkipped, item.get_id(), at, "not_leader")
            except Exception:
                continue

    def _lead(self) -> bool:
        """Be the leader this tick, or not; a lock that raises or cannot reach its backend means not."""
        leader = self._leader
        if leader is None:
            return True
        error: BaseException | None = None
        try:
            ok = False
            if self._is_leader and leader.is_held:
                ok = bool(leader.renew())
            if not ok:
                ok = bool(leader.acquire(self._leader_ttl))
            if not ok:
                error = getattr(leader, "last_error", None)
        except Exception as exc:
            ok = False
            error = exc
        self._note_leader_error(error)
        if ok != self._is_leader:
            self._log.info("job runner %r: %s leadership", self.name, "took" if ok else "lost")
            if ok:
                self._life.emit(LeadershipAcquired)
            else:
                self._life.emit(LeadershipLost, "error" if error is not None else "lost")
        self._is_leader = ok
        return ok

    def _note_leader_error(self, error: BaseException | None) -> None:
        """Say once, loudly, that the lock's backend is out of reach; once that it is back."""
        if error is None:
            if self._leader_error is not None:
                self._log.warning("job runner %r: the leader lock is reachable again", self.name)
            self._leader_failures = 0
            self._leader_error = None
            return
        self._leader_failures += 1
        if self._leader_failures == LEADER_ERROR_TICKS:
            self._leader_error = "%s: %s" % (type(error).__name__, error)
            self._log.error(
                "job runner %r: the leader lock %r failed on %d ticks in a row; no jobs run until it"
                " recovers: %s",
                self.name,
                self._leader,
                LEADER_ERROR_TICKS,
                self._leader_error,
                exc_info=error,
            )
        else:
            self._log.debug("job runner %r: leader lock failed: %r", self.name, error)

    def _prepare(self, at: datetime.datetime, jobs: list[Any], claim: bool) -> _Batch:
        runnable = []
        ids = []
        indices = []
        items = []
        fenced = False
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
            if claim:
                if fenced:
                    self._stats["fenced_claims_total"] += 1
                    continue
                outcome = self._claim(job_id, at)
                if str(outcome) == "fenced":
                    fenced = True
                    self._fenced()
                    continue
                if not outcome:
                    continue
            runnable.append(item)
            ids.append(job_id)
            indices.append(index)
        return _Batch(at, runnable, ids, indices, items)

    def _claim(self, job_id: str, at: datetime.datetime) -> Any:
        key = "%s@%s" % (job_id, at.astimezone(_UTC).isoformat())
        try:
            outcome = self._leader.claim(key, self._claim_ttl)
        except Exception:
            self._log.exception("job runner %r: claim %r failed; job not run", self.name, key)
            outcome = False
        if str(outcome) == "fenced":
            self._stats["fenced_claims_total"] += 1
        elif not outcome:
            self._stats["claim_skips_total"] += 1
            self._life.emit(JobSkipped, job_id, at, "claimed")
        return outcome

    def _fenced(self) -> None:
        """A newer leader exists: this one was paused past its lease. Stop leading at once."""
        self._log.warning(
            "job runner %r: a newer leader holds %r (this process was paused past its lease);"
            " no jobs run until it leads again",
            self.name,
            self._leader,
        )
        if self._is_leader:
            self._is_leader = False
            self._life.emit(LeadershipLost, "fenced")

    # -- inspecting ----------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Return the counters and sizes now, as a new dict of ints. Never blocks.

        ``in_flight_jobs`` (jobs holding a slot), ``batch_queue_depth`` /
        ``batch_queue_capacity`` (pushed batches), ``dedupe_skips_total``,
        ``dropped_results_total``, ``missed_ticks_total``,
        ``not_leader_ticks_total``, ``claim_skips_total`` (due jobs another
        process had claimed), ``fenced_claims_total`` (claims refused because
        a newer leader exists), ``discarded_batches_total`` (queued batches
        dropped by ``stop()``).
        """
        stats = dict(self._stats)
        stats["in_flight_jobs"] = self._batches.running
        stats["batch_queue_depth"] = len(self._fifo)
        stats["dropped_results_total"] = self.results.dropped
        return stats

    def in_flight_ids(self) -> list[str]:
        """Return the sorted ids marked in flight (running or waiting for a slot); ``[]`` without dedupe."""
        return sorted(self._batches.in_flight)

    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict describing the runner (for status pages).

        Beyond the common header: ``tick``, ``last_tick``, ``next_tick``,
        ``is_leader``, ``leader_error`` (None, or the backend error once it
        failed 3 ticks in a row), ``stats`` and ``jobs``, one dict per job of
        the standing set: ``id``, ``schedule`` (its text), ``running`` (in
        flight, with dedupe) and ``last_run`` (None or ``{"at", "duration",
        "outcome", "error"}``).
        """
        last_runs = self._batches.last_runs
        in_flight = self._batches.in_flight
        jobs = []
        for item in list(self._standing):
            try:
                job_id = str(item.get_id())
            except Exception:
                job_id = "<%s>" % type(item).__name__
            last = last_runs.get(job_id)
            jobs.append(
                {
                    "id": job_id,
                    "schedule": str(getattr(item, "schedule", None) or "every tick"),
                    "running": job_id in in_flight,
                    "last_run": None
                    if last is None
                    else {
                        "at": iso(last[0]),
                        "duration": last[1] - last[0],
                        "outcome": "ok" if last[2] is None else "error",
                        "error": None if last[2] is None else repr(last[2]),
                    },
                }
            )
        next_tick = None
        if not self._stopping:
            next_tick = self._at(self._next_index * self._tick_us).astimezone(_UTC).isoformat()
        snap = self._life.header()
        snap.update(
            tick=self.tick,
            limit=self._limit,
            last_tick=None if self._last_tick is None else self._last_tick.astimezone(_UTC).isoformat(),
            next_tick=next_tick,
            is_leader=self._is_leader,
            leader_error=self._leader_error,
            stats=self.stats(),
            jobs=jobs,
        )
        return snap

    # -- stopping ------------------------------------------------------------

    def start(self) -> "JobRunner":
        """See `IComponent.start`: a JobRunner ticks from construction, so this returns it.

        :raises ShuttingDownError: after :meth:`stop` (a JobRunner does not restart).
        """
        if self._stopping:
            raise ShuttingDownError("job runner %r is stopped and cannot start again" % self.name)
        return self

    def stop(self, timeout: float | None = None, *, wait: bool = True) -> bool:
        """Stop ticking and ingesting; jobs waiting for a slot get a `ShuttingDownError`.

        Queued batches are discarded, counted and logged; a held leader lease
        is released. With *wait* (the default) it then blocks until every
        batch finished, kills whatever still runs *timeout* seconds after the
        call (on the clock; ``None``: waits as long as it takes) and closes
        :attr:`results`. ``stop(wait=False)`` (the seed's ``Stop``) returns
        once the tick and ingest greenlets ended while running jobs carry on
        (:meth:`wait` waits for them); it may be called from a job.
        Idempotent.

        :return bool: True if everything ended in time (always True with
            ``wait=False``); False if jobs had to be killed.
        :raises ReentrantStopError: with *wait*, from one of the runner's own
            greenlets (a job), which it would wait for.
        """
        timeout = _checks.seconds("timeout", timeout, none=True)
        if not wait:
            self._stop_ticking()
            return True
        self._life.check_not_own("stop")
        self._stop_ticking()
        clean = self._clock.wait(self._batches.idle, timeout)
        if not clean:
            self._life.finish(self._batches.greenlets(), 0, "job")
        self._finished(clean)
        return clean

    def stop_and_wait(self, timeout: float | None = None) -> bool:
        """The seed's verb for :meth:`stop` (``stop(timeout)``)."""
        return self.stop(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Stop ticking (as ``stop(wait=False)``), wait for every batch, close :attr:`results`.

        Unlike :meth:`stop` it kills nothing: after *timeout* it returns
        False and the jobs carry on. No tick can come after ``wait()``.

        :return bool: False if *timeout* passed first (results stay open).
        :raises ReentrantStopError: from one of the runner's own greenlets.
        """
        timeout = _checks.seconds("timeout", timeout, none=True)
        self._life.check_not_own("wait")
        self._stop_ticking()
        if not self._clock.wait(self._batches.idle, timeout):
            return False
        self._finished(True)
        return True

    def _finished(self, clean: bool) -> None:
        self.results.close()
        if self._life.state is not State.STOPPED:
            self._life.stopped(clean)

    def _stop_ticking(self) -> None:
        tick = self._tick_greenlet
        if self._stopping:
            # A concurrent stop is ending the tick greenlet: wait for it, unless we are it.
            if not _is_current(tick):
                tick.join()
            return
        self._stopping = True
        self._life.state = State.STOPPING
        self._ctx.cancel()
        self._space.set()
        self._batches.stop()
        ingest = self._ingest_greenlet
        if ingest is not None and not _is_current(ingest):
            ingest.kill()
        if not _is_current(tick):
            tick.join()
        discarded = len(self._fifo) + (self._held is not None)
        self._held = None
        if discarded:
            self._fifo.clear()
            self._stats["discarded_batches_total"] += discarded
            self._log.warning("job runner %r stopped; dropped %d queued batch(es)", self.name, discarded)
        if self._leader is not None and self._is_leader:
            try:
                self._leader.release()
            except Exception:
                self._log.exception("job runner %r: releasing the leader lock failed", self.name)
            self._is_leader = False
            self._life.emit(LeadershipLost, "stopped")
        self._log.info("job runner %r stopped ticking", self.name)

    def __enter__(self) -> "JobRunner":
        return self.start()

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "<greenworks.JobRunner %r %s tick=%ss limit=%s running=%d>" % (
            self.name,
            self._life.state.value,
            self.tick,
            self._limit,
            self._batches.running,
        )


def _is_current(greenlet: Any) -> bool:
    return greenlet is getcurrent()
