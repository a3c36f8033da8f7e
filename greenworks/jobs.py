"""
JobRunner: periodic jobs with APScheduler-class control, once per cluster.

Usage::

    with JobRunner(tick=60) as runner:
        @runner.scheduled(Cron("0 8 * * *"), misfire_grace_time=600)
        def report():
            send_report()

        runner.add_job(sweep, Every(minutes=5), max_instances=1, timeout=30)
        runner.pause_job("sweep"); runner.resume_job("sweep")
        runner.next_run_time("report")      # an aware datetime

How it works:

- A scheduler greenlet sleeps (through the clock) until the earliest due
  time of its jobs (`~greenworks._timetable.Timetable`): a job whose
  schedule has ``next_after`` (``Every``, ``Interval``, ``At``, ``Cron``,
  ``AnyOf``, ``AllOf``) is due exactly then, so 1,000 hourly jobs wake the
  runner hourly. Jobs whose schedule only answers ``is_run(now)`` (a plain
  predicate, ``None`` for "every tick", a custom `IJob`) are asked on every
  wall-clock multiple of ``tick``, as are pushed batches; ``tick`` is the
  resolution of those, not a requirement of the others.
- When it wakes late (the hub was busy, or no process ran while a job store
  kept the due time), the misfire rules apply per job: a due time older than
  ``misfire_grace_time`` is skipped and reported (`JobSkipped` "misfired",
  ``misfired_total``); of those within grace ``coalesce=True`` runs the
  latest once, ``coalesce=False`` each. Tick boundaries of polled jobs that
  passed unseen are counted (``missed_ticks_total``, `TicksMissed`) and run once.
- The due runs of one due time become one batch and one :class:`Result`,
  run by a `~greenworks._batches.BatchRunner` on shared workers, at most
  ``limit`` at once and at most ``max_instances`` per job; a job with
  ``jitter`` starts a random ``[0, jitter]`` seconds late (from the runner's
  ``random``, so tests are exact); a job with ``timeout`` gets a `Context`
  with that deadline and is interrupted if it ignores it.
- With a ``leader`` lock only the process holding it runs jobs, and each due
  run is claimed as ``"<id>@<due UTC iso>"`` first (`~greenworks._leadership.Leadership`);
  with a ``store`` (`greenworks.jobstores`) the store's compare-and-set claim
  must agree too, so a due time runs once across processes and restarts, and
  a runner that starts after a deploy catches up what it missed.
- Results go to :attr:`JobRunner.results`, which keeps the newest
  ``results_buffer`` Results and drops (and counts) the oldest.

Differences from the original (Sotaneum/go-runner): ``wait()`` implies
``stop()``, a stop always wins over a freed slot, jobs can be added, removed,
paused and run now, and ``stop(timeout)`` waits for the jobs and kills what
outlives it.
"""

import datetime
import logging
import random as _random
from collections.abc import Iterable
from typing import Any

import zope.event
from gevent.event import AsyncResult, Event
from greenlet import getcurrent
from zope.interface import implementer

from greenworks import _checks
from greenworks._batches import NO_LIMIT, BatchRunner
from greenworks._component import Lifecycle, State, iso
from greenworks._job import Job, job
from greenworks._leadership import Leadership
from greenworks._results import JobResult, Result, ResultStream, _Batch
from greenworks._timetable import Timetable
from greenworks.clock import ClockLike
from greenworks.events import JobSkipped, TicksMissed
from greenworks.exceptions import (
    InvalidScheduleError,
    JobExistsError,
    JobLookupError,
    PanicError,
    ShuttingDownError,
    SkippedDuplicateError,
    invalid_argument,
)
from greenworks.interfaces import IJobRunner, IJobStore, ILeaderLock
from greenworks.schedules import Cron, Every

__all__ = [
    "Cron",
    "Every",
    "InvalidScheduleError",
    "Job",
    "JobExistsError",
    "JobLookupError",
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

_US = 1000000
_UTC = datetime.timezone.utc
# A claim must outlive its due time so no process can claim it again.
_MIN_CLAIM_TTL = 1.0


def _check_jobs(name: str, jobs: Iterable[Any]) -> list[Any]:
    try:
        jobs = list(jobs)
    except TypeError:
        raise invalid_argument(name, jobs, "an iterable of jobs (get_id, is_run, run)") from None
    for index, item in enumerate(jobs):
        if not all(callable(getattr(item, attr, None)) for attr in ("get_id", "is_run", "run")):
            raise invalid_argument("%s[%d]" % (name, index), item, "a job with get_id(), is_run(now), run()")
    return jobs


def _stats() -> dict[str, int]:
    return dict.fromkeys(
        (
            "in_flight_jobs",
            "batch_queue_depth",
            "batch_queue_capacity",
            "dedupe_skips_total",
            "dropped_results_total",
            "missed_ticks_total",
            "misfired_total",
            "not_leader_ticks_total",
            "claim_skips_total",
            "fenced_claims_total",
            "discarded_batches_total",
        ),
        0,
    )


@implementer(IJobRunner)
class JobRunner:
    """Default implementation of `IJobRunner`.

    Starts its scheduler greenlet (and the ingest greenlet with *source*) at
    construction; ``stop()`` (or leaving a ``with`` block) ends it.

    :param source: optional queue (anything with a blocking ``get()``, e.g.
        ``gevent.queue.Queue``) the caller feeds with batches. Putting
        ``StopIteration`` on it ends the ingest greenlet.
    :param limit: jobs running at once across all batches: an int ``>= 1``,
        or ``None`` for no limit (default 50).
    :keyword bool dedupe: a job whose id is in flight is skipped
        (`SkippedDuplicateError`), unless its own ``max_instances`` says otherwise.
    :keyword int batch_buffer: FIFO size for pushed batches (``>= 1``).
    :keyword on_panic: ``on_panic(id, exc, stack)`` when a ``run()`` raised; runs
        in the worker greenlet that ran the job, which holds its slot until
        ``on_panic`` returns; its own exceptions are logged and ignored.
    :keyword on_skip: ``on_skip(id)`` for a dedupe skip, in the batch greenlet.
    :keyword int results_buffer: Results :attr:`results` keeps (>= 1).
    :keyword float tick: seconds (>= 0.001) between the wall-clock boundaries
        at which polled jobs and pushed batches are looked at.
    :keyword tzinfo timezone: zone schedules are asked in; ``None`` is the
        clock's zone (local time for the real clock, UTC for a FakeClock).
    :keyword bool input_order: order ``Result.items`` like the input instead of by completion.
    :keyword ILeaderLock leader: run jobs only while holding this lease; ``None``: always.
    :keyword float leader_ttl: the lease's ttl; default one ``tick`` (a lock
        that renews itself, like `RedisLock`, is then taken over within a
        tick of its holder's death). Claims live ``max(2 * tick, 1)`` s at least.
    :keyword IJobStore store: where job state survives restarts (`greenworks.jobstores`);
        ``None`` keeps it in this process.
    :keyword random: a ``random.Random`` for the jitter (seed it in tests).
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
        store: Any = None,
        random: Any = None,
        name: str = "jobs",
        clock: ClockLike | None = None,
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
        if store is not None and not IJobStore.providedBy(store):
            raise invalid_argument("store", store, "an IJobStore (greenworks.jobstores) or None")
        if random is not None and not callable(getattr(random, "uniform", None)):
            raise invalid_argument("random", random, "a random.Random or None")
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
        self._random = random or _random.Random()
        self._source = source
        self._stats = _stats()
        self._stats["batch_queue_capacity"] = batch_buffer
        ttl = tick if leader_ttl is None else leader_ttl
        self._leadership = Leadership(life, leader, ttl, max(ttl, 2.0 * tick, _MIN_CLAIM_TTL), self._stats)
        self._table = Timetable(self._zone, store)
        self._fifo: list[list[Any]] = []  # pushed batches, oldest first
        self._space = Event()  # set whenever the FIFO shrinks (or on stop)
        self._wake = Event()  # set when the next wake-up may be earlier (or on stop)
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
            on_run=self._ran if store is not None else None,
        )
        self._paused = False
        self._last_tick: datetime.datetime | None = None
        self._next_index = round(self._clock.time() * _US) // tick_us + 1
        self._stopping = False

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
        """Whether this runner led its last wake-up (bool; always True without ``leader``)."""
        return self._leadership.is_leader

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` holds every job (bool, read-only)."""
        return self._paused

    def _zone(self) -> Any:
        return self._timezone or self._clock.now().tzinfo

    def _changed(self) -> None:
        self._wake.set()

    # -- jobs --------------------------------------------------------------------

    def add_job(
        self,
        fn: Any,
        schedule: Any = None,
        *,
        id: str | None = None,
        args: Any = (),
        kwargs: Any = None,
        max_instances: int | None = 1,
        misfire_grace_time: float | None = None,
        coalesce: bool = True,
        jitter: float | None = None,
        timeout: float | None = None,
        replace_existing: bool = False,
    ) -> Job:
        """Schedule ``fn(*args, **kwargs)`` and return its `Job`. Never switches (but a store may).

        :param schedule: an `ISchedule`, a predicate ``(now) -> bool``, or
            None (every tick).
        :keyword str id: default: the function's qualified name.
        :keyword max_instances: runs of this job at once (default 1; ``None``: no limit).
        :keyword misfire_grace_time: seconds a run may be late (``None``: however late).
        :keyword coalesce: missed due times run once (True) or each (False).
        :keyword jitter: seconds of random delay before each run.
        :keyword timeout: seconds a run may take (its ``ctx`` deadline; then it is interrupted).
        :keyword replace_existing: replace a job of the same id instead of refusing.
        :raises JobExistsError: the id is taken and *replace_existing* is false.
        :raises InvalidScheduleError: an ``At`` already past its grace.
        :raises InvalidArgument: naming any other bad argument.
        """
        if id is None:
            id = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
        made = Job(
            id,
            fn,
            schedule,
            args=args,
            kwargs=kwargs,
            max_instances=max_instances,
            misfire_grace_time=misfire_grace_time,
            coalesce=coalesce,
            jitter=jitter,
            timeout=timeout,
        )
        if not isinstance(replace_existing, bool):
            raise invalid_argument("replace_existing", replace_existing, "a bool")
        if id in self._table.entries and not replace_existing:
            raise JobExistsError("job %r exists already (pass replace_existing=True to replace it)" % (id,))
        self._add(made, id)
        return made

    def _add(self, item: Any, job_id: str) -> None:
        now = self._clock.time()
        schedule = getattr(item, "schedule", None)
        when = getattr(schedule, "when", None)
        entry = self._table.add(item, job_id, now)
        if isinstance(when, datetime.datetime) and when.timestamp() <= now and entry.next_due is None:
            # A one-off time already past: due at once if within grace, refused otherwise.
            grace = getattr(item, "misfire_grace_time", None)
            if grace is not None and now - when.timestamp() > grace:
                self._table.remove(job_id)
                raise InvalidScheduleError(
                    "job %r: %r is %.0fs in the past, beyond misfire_grace_time=%ss"
                    % (job_id, schedule, now - when.timestamp(), grace)
                )
            entry.next_due = when.timestamp()
            self._table._push(entry)
        self._changed()

    def scheduled(self, schedule: Any = None, **options: Any) -> Any:
        """Decorator: ``@runner.scheduled(Every(minutes=5), id="sweep")`` adds the function as a job.

        Takes the keyword options of :meth:`add_job`; returns the function unchanged.
        """

        def decorate(fn: Any) -> Any:
            self.add_job(fn, schedule, **options)
            return fn

        return decorate

    def set_jobs(self, jobs: Any) -> None:
        """Replace the whole set of jobs. Never switches (but a store may).

        Jobs listed again keep their place in the timetable; the others are
        removed. A batch already being evaluated keeps the jobs it started with.

        :raises InvalidArgument: if *jobs* is not an iterable of jobs, or two
            of them share an id.
        """
        jobs = _check_jobs("jobs", jobs)
        ids = []
        seen = set()
        for item in jobs:
            job_id = item.get_id()
            if job_id in seen:
                raise invalid_argument("jobs", job_id, "unique job ids (this one is listed twice)")
            ids.append(job_id)
            seen.add(job_id)
        entries = self._table.entries
        for job_id in [j for j in entries if j not in seen]:
            self._table.remove(job_id)
        for item, job_id in zip(jobs, ids, strict=True):
            entry = entries.get(job_id)
            if entry is None or entry.job is not item:
                self._add(item, job_id)
            else:
                # Kept: move it to the end, so the set's order is the order given.
                self._table.move_to_end(job_id)

    def _entry(self, job_id: Any) -> Any:
        entry = self._table.entries.get(job_id)
        if entry is None:
            raise JobLookupError("job runner %r has no job %r" % (self.name, job_id))
        return entry

    def remove_job(self, job_id: str) -> None:
        """Remove the job (a run in progress finishes). :raises JobLookupError: no such job."""
        self._entry(job_id)
        self._table.remove(job_id)

    def get_job(self, job_id: str) -> Any:
        """Return the job of that id, or None."""
        entry = self._table.entries.get(job_id)
        return None if entry is None else entry.job

    def get_jobs(self) -> list[Any]:
        """Return every job, in the order they were added."""
        return [entry.job for entry in self._table.entries.values()]

    def pause_job(self, job_id: str) -> None:
        """Hold the job: its due times pass without running (reported "paused") until resumed."""
        self._table.set_paused(self._entry(job_id), True, self._clock.time())

    def resume_job(self, job_id: str) -> None:
        """Resume the job; it is next due at its schedule's first time after now."""
        self._table.set_paused(self._entry(job_id), False, self._clock.time())
        self._changed()

    def pause(self) -> None:
        """Hold every job (pushed batches too) until :meth:`resume`."""
        self._paused = True

    def resume(self) -> None:
        """End :meth:`pause`; due times that passed meanwhile are not run."""
        self._paused = False
        self._changed()

    def next_run_time(self, job_id: str) -> datetime.datetime | None:
        """When the job is next due (aware, the runner's zone), or None (paused, no more, or polled)."""
        return self._table.next_run_time(self._entry(job_id))

    def run_job_now(self, job_id: str) -> AsyncResult:
        """Run the job now, outside its schedule (still under ``limit`` and ``max_instances``).

        :return AsyncResult: of the run's `Result`.
        :raises JobLookupError: no such job.
        """
        entry = self._entry(job_id)
        reply = AsyncResult()
        if self._stopping:
            reply.set_exception(ShuttingDownError("runner: stopped before the job could run"))
            return reply
        at = datetime.datetime.fromtimestamp(self._clock.time(), self._zone())
        self._batches.start_batch(_Batch(at, [entry.job], [job_id], [0], [], reply))
        return reply

    # -- feeding -------------------------------------------------------------

    def push(self, batch: Any, timeout: float | None = None) -> bool:
        """Queue *batch* (an iterable of jobs) for the next tick.

        Blocks while ``batch_buffer`` batches wait (backpressure), up to
        *timeout* seconds on the clock. Never blocks once stopped.

        :return bool: True if queued; False after ``stop()`` or on timeout
            (the batch was not kept).
        :raises InvalidArgument: if *batch* is not an iterable of jobs.
        """
        timeout = _checks.seconds("timeout", timeout, none=True, negative=True)
        return self._enqueue(_check_jobs("batch", batch), timeout)

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
        self._changed()
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

    # -- waking ----------------------------------------------------------------

    def _at(self, boundary_us: int, zone: datetime.tzinfo | None = None) -> datetime.datetime:
        at = datetime.datetime.fromtimestamp(boundary_us // _US, _UTC)
        at += datetime.timedelta(microseconds=boundary_us % _US)
        # *zone*: the zone already looked up for this wake-up (the real clock's costs a now()).
        return at.astimezone(zone or self._zone())

    def _polling(self) -> bool:
        return bool(self._fifo) or self._table.has_polled()

    def _next_wake_us(self) -> int | None:
        target = self._next_index * self._tick_us if self._polling() else None
        earliest = self._table.earliest()
        if earliest is not None:
            due = round(earliest * _US)
            target = due if target is None else min(target, due)
        return target

    def _tick_loop(self) -> None:
        clock = self._clock
        wake = self._wake
        while not self._stopping:
            target = self._next_wake_us()
            now_us = round(clock.time() * _US)
            if target is None or target > now_us:
                wake.clear()
                clock.wait(wake, None if target is None else (target - now_us) / _US)
                continue  # woken early, by a change, or the wall clock moved: recompute
            try:
                self._wake_up(now_us)
            except Exception:  # a bug here must not end the runner
                self._log.exception("job runner %r: scheduling failed", self.name)

    def _wake_up(self, now_us: int) -> None:
        tick_us = self._tick_us
        current = now_us // tick_us
        boundary = None
        if self._polling():
            if current >= self._next_index:
                missed = current - self._next_index
                if missed > 0:
                    self._stats["missed_ticks_total"] += missed
                    self._log.warning(
                        "job runner %r missed %d tick(s): the hub was busy past their boundaries; ran once",
                        self.name,
                        missed,
                    )
                    self._life.emit(TicksMissed, missed)
                boundary = current * tick_us
                self._next_index = current + 1
        elif current >= self._next_index:
            # Nothing polls: boundaries pass unwatched, and none is "missed".
            self._next_index = current + 1
        due = self._table.due(now_us / _US)
        if boundary is None and not due:
            return
        zone = self._zone()
        at = self._at(boundary if boundary is not None else now_us, zone)
        self._last_tick = at
        if self._paused or not self._leadership.lead():
            self._skip_wake(at, boundary, due)
            return
        groups: dict[int, list[Any]] = {}
        claims = []
        moments: dict[float, datetime.datetime] = {}  # due -> its datetime, built once per wake-up
        leadership = self._leadership
        for entry, runs, misfired in due:
            if misfired:
                self._misfired(entry, misfired)
            if entry.paused:
                for run in runs:
                    self._life.emit(JobSkipped, entry.id, self._at(round(run * _US)), "paused")
                continue
            for run in runs:
                run_at = moments.get(run)
                if run_at is None:
                    run_at = moments[run] = self._at(round(run * _US), zone)
                if leadership.lock is None or leadership.claim(entry.id, run_at):
                    claims.append((entry, run))
                else:
                    self._life.emit(JobSkipped, entry.id, run_at, "claimed")
        won = self._table.claim(claims)
        for (entry, run), ok in zip(claims, won, strict=True):
            if ok:
                group = groups.get(round(run * _US))
                if group is None:
                    group = groups[round(run * _US)] = []
                group.append(entry.job)
            else:
                self._life.emit(JobSkipped, entry.id, moments[run], "claimed")
        for entry, _runs, _misfired in due:
            if entry.next_due is None and not entry.polled:
                # A one-off schedule that came due: the job is done.
                self._table.remove(entry.id)
        legacy = None
        if boundary is not None:
            # The timetable knows their ids (it keyed them by get_id()); pushed jobs are asked.
            jobs, known = self._table.polled_jobs()
            popped = bool(self._fifo)
            if popped:
                jobs = jobs + self._fifo.pop(0)  # the timetable's list is shared: not extended
                self._space.set()
            if jobs or popped:
                legacy = self._prepare(at, jobs, claim=self._leadership.lock is not None, known=known)
                if not (popped or legacy.jobs or legacy.items):
                    legacy = None
        self._start(groups, boundary, legacy, zone)

    def _start(
        self,
        groups: dict[int, list[Any]],
        boundary: int | None,
        legacy: _Batch | None,
        zone: datetime.tzinfo | None = None,
    ) -> None:
        """Start one batch per due time (the tick's polled jobs join theirs); jittered jobs alone."""
        if legacy is not None and boundary not in groups:
            self._batches.start_batch(legacy)
            legacy = None
        for due_us in sorted(groups):
            at = self._at(due_us, zone)
            plain = []
            for item in groups[due_us]:
                if getattr(item, "jitter", None):
                    alone = _Batch(at, [item], [item.id], [0], [])
                    alone.delay = self._random.uniform(0.0, item.jitter)
                    self._batches.start_batch(alone)
                else:
                    plain.append(item)
            if legacy is not None and due_us == boundary:
                first = len(legacy.indices) and max(legacy.indices) + 1
                batch = _Batch(
                    at,
                    legacy.jobs + plain,
                    legacy.ids + [item.id for item in plain],
                    legacy.indices + list(range(first, first + len(plain))),
                    legacy.items,
                )
                legacy = None
            elif plain:
                batch = _Batch(at, plain, [item.id for item in plain], list(range(len(plain))), [])
            else:
                continue
            self._batches.start_batch(batch)

    def _skip_wake(self, at: datetime.datetime, boundary: int | None, due: list[Any]) -> None:
        reason = "paused" if self._paused else "not_leader"
        if reason == "not_leader":
            self._stats["not_leader_ticks_total"] += 1
            self._log.debug("job runner %r: not the leader at %s, no jobs run", self.name, at)
        for entry, runs, misfired in due:
            self._misfired(entry, misfired)
            for run in runs:
                self._life.emit(JobSkipped, entry.id, self._at(round(run * _US)), reason)
        if boundary is not None and zope.event.subscribers:
            # A follower does not otherwise ask is_run: only for the subscribers.
            for entry in self._table.polled():
                try:
                    if entry.job.is_run(at):
                        self._life.emit(JobSkipped, entry.id, at, reason)
                except Exception:
                    continue

    def _misfired(self, entry: Any, misfired: list[float]) -> None:
        if not misfired:
            return
        self._stats["misfired_total"] += len(misfired)
        self._log.warning(
            "job runner %r: job %r missed %d due time(s) beyond its misfire_grace_time (%ss); skipped",
            self.name,
            entry.id,
            len(misfired),
            getattr(entry.job, "misfire_grace_time", None),
        )
        for run in misfired:
            self._life.emit(JobSkipped, entry.id, self._at(round(run * _US)), "misfired")

    def _prepare(
        self, at: datetime.datetime, jobs: list[Any], claim: bool, known: list[Any] | None = None
    ) -> _Batch:
        """The due jobs of *jobs* at *at*, asking each ``is_run`` (and claiming them with *claim*).

        *known* are the ids of the first ``len(known)`` jobs (the timetable's);
        the others are asked their ``get_id()``.
        """
        runnable: list[Any] = []
        ids: list[Any] = []
        indices: list[int] = []
        items: list[JobResult] = []
        known = known or []
        known_count = len(known)
        if not claim and known_count:
            # The common tick: the timetable's jobs, no claims. The same steps as below, in
            # two passes: every is_run in a bare loop, then the due ones picked out in C
            # (all due, the usual standing jobs, is three copies), which starts a
            # 1,000-job tick's first job ~0.15 ms sooner than one loop doing both.
            dues = self._ask(at, jobs, known, items)
            if all(dues):
                runnable, ids, indices = jobs[:known_count], list(known), list(range(known_count))
            else:
                indices = [index for index, due in enumerate(dues) if due]
                runnable = [jobs[index] for index in indices]
                ids = [known[index] for index in indices]
            if known_count == len(jobs):
                return _Batch(at, runnable, ids, indices, items)
        start = known_count if not claim else 0
        for index in range(start, len(jobs)):
            item = jobs[index]
            if index < known_count:
                job_id = known[index]
            else:
                try:
                    job_id = item.get_id()
                except Exception as exc:
                    self._log.exception("job runner %r: get_id() of %r raised; job not run", self.name, item)
                    items.append(JobResult("<%s>" % type(item).__name__, None, exc, at, at, index))
                    continue
            try:
                is_due = item.is_run(at)
            except Exception as exc:
                self._not_asked(at, job_id, index, exc, items)
                continue
            if not is_due:
                continue
            if claim and not self._leadership.claim(job_id, at):
                self._life.emit(JobSkipped, job_id, at, "claimed")
                continue
            runnable.append(item)
            ids.append(job_id)
            indices.append(index)
        return _Batch(at, runnable, ids, indices, items)

    def _ask(
        self, at: datetime.datetime, jobs: list[Any], known: list[Any], items: list[JobResult]
    ) -> list[Any]:
        """What ``is_run(at)`` answered for each of the first ``len(known)`` *jobs*, in order.

        One that raised is logged, gets a `JobResult` with the error in
        *items* and answers False. Runs user code: may switch.
        """
        count = len(known)
        dues: list[Any] = []
        ask = dues.append
        while True:
            start = len(dues)
            try:
                # The loop holds no index and no try per job: a raise resumes after that job.
                for item in jobs[start:count] if start or count != len(jobs) else jobs:
                    ask(item.is_run(at))
                return dues
            except Exception as exc:
                index = len(dues)
                self._not_asked(at, known[index], index, exc, items)
                ask(False)

    def _not_asked(
        self, at: datetime.datetime, job_id: Any, index: int, exc: Exception, items: list[JobResult]
    ) -> None:
        """Report a job whose ``is_run`` raised: logged, and its error kept in *items*; it does not run."""
        self._log.exception("job runner %r: is_run() of %r raised; job not run", self.name, job_id)
        items.append(JobResult(job_id, None, exc, at, at, index))

    def _ran(self, job_id: str, due: datetime.datetime, started: float, ended: float, error: Any) -> None:
        from greenworks.jobstores import LastRun

        self._table.record(
            job_id,
            LastRun(
                due.astimezone(_UTC),
                datetime.datetime.fromtimestamp(started, _UTC),
                ended - started,
                "ok" if error is None else "error",
                None if error is None else repr(error),
            ),
        )

    # -- inspecting ----------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Return the counters and sizes now, as a new dict of ints. Never blocks.

        ``in_flight_jobs`` (jobs holding a slot), ``batch_queue_depth`` /
        ``batch_queue_capacity`` (pushed batches), ``dedupe_skips_total``
        (runs skipped by dedupe or ``max_instances``), ``dropped_results_total``,
        ``missed_ticks_total``, ``misfired_total`` (due times skipped as too
        late), ``not_leader_ticks_total``, ``claim_skips_total`` (due runs
        another process had claimed), ``fenced_claims_total`` (claims refused
        because a newer leader exists), ``discarded_batches_total`` (queued
        batches dropped by ``stop()``).
        """
        stats = dict(self._stats)
        stats["in_flight_jobs"] = self._batches.running
        stats["batch_queue_depth"] = len(self._fifo)
        stats["dropped_results_total"] = self.results.dropped
        return stats

    def in_flight_ids(self) -> list[str]:
        """Return the sorted ids running or waiting for a slot; ``[]`` without dedupe."""
        return sorted(self._batches.instances) if self.dedupe else []

    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict describing the runner (for status pages).

        Beyond the common header: ``tick``, ``limit``, ``paused``,
        ``last_tick``, ``next_tick`` (the next wake-up), ``is_leader``,
        ``leader_error`` (None, or the backend error once it failed 3 ticks in
        a row), ``store`` (its snapshot, or None), ``stats`` and ``jobs``, one
        dict per job: ``id``, ``schedule`` (its text), ``next_run``,
        ``paused``, ``running`` (runs in flight), ``misfires`` and
        ``last_run`` (None or ``{"at", "duration", "outcome", "error"}``).
        """
        last_run = self._batches.last_run
        instances = self._batches.instances
        jobs = []
        for entry in list(self._table.entries.values()):
            item = entry.job
            last = last_run(entry.id)
            describe = getattr(item, "describe", None)
            next_run = self._table.next_run_time(entry)
            jobs.append(
                {
                    "id": str(entry.id),
                    "schedule": describe()
                    if callable(describe)
                    else str(getattr(item, "schedule", "every tick")),
                    "next_run": None if next_run is None else next_run.astimezone(_UTC).isoformat(),
                    "paused": entry.paused,
                    "running": instances.get(entry.id, 0),
                    "misfires": entry.misfires,
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
            target = self._next_wake_us()
            next_tick = None if target is None else self._at(target).astimezone(_UTC).isoformat()
        store = self._table.store
        snap = self._life.header()
        snap.update(
            tick=self.tick,
            limit=self._limit,
            paused=self._paused,
            last_tick=None if self._last_tick is None else self._last_tick.astimezone(_UTC).isoformat(),
            next_tick=next_tick,
            is_leader=self._leadership.is_leader,
            leader_error=self._leadership.error,
            store=None if store is None else store.snapshot(),
            stats=self.stats(),
            jobs=jobs,
        )
        return snap

    # -- stopping ------------------------------------------------------------

    def start(self) -> "JobRunner":
        """See `IComponent.start`: a JobRunner runs from construction, so this returns it.

        :raises ShuttingDownError: after :meth:`stop` (a JobRunner does not restart).
        """
        if self._stopping:
            raise ShuttingDownError("job runner %r is stopped and cannot start again" % self.name)
        return self

    def stop(self, timeout: float | None = None, *, wait: bool = True) -> bool:
        """Stop scheduling and ingesting; jobs waiting for a slot get a `ShuttingDownError`.

        Queued batches are discarded, counted and logged; a held leader lease
        is released. With *wait* (the default) the contexts of running jobs
        are cancelled, and it blocks until every batch finished, kills
        whatever still runs *timeout* seconds after the call (on the clock;
        ``None``: waits as long as it takes) and closes :attr:`results`.
        ``stop(wait=False)`` returns once the scheduler
        and ingest greenlets ended while running jobs carry on (:meth:`wait`
        waits for them); it may be called from a job. Idempotent.

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
        self._batches.stop(cancel=True)
        clean = self._clock.wait(self._batches.idle, timeout)
        if not clean:
            self._life.finish(self._batches.greenlets(), 0, "job")
        self._finished(clean)
        return clean

    def stop_and_wait(self, timeout: float | None = None) -> bool:
        """Another name for :meth:`stop` (``stop(timeout)``), kept from the original."""
        return self.stop(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Stop scheduling (as ``stop(wait=False)``), wait for every batch, close :attr:`results`.

        Unlike :meth:`stop` it kills nothing: after *timeout* it returns
        False and the jobs carry on. Nothing is scheduled after ``wait()``.

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
            # A concurrent stop is ending the scheduler greenlet: wait for it, unless we are it.
            if tick is not getcurrent():
                tick.join()
            return
        self._stopping = True
        self._life.state = State.STOPPING
        self._wake.set()
        self._space.set()
        self._batches.stop()
        ingest = self._ingest_greenlet
        if ingest is not None and ingest is not getcurrent():
            ingest.kill()
        if tick is not getcurrent():
            tick.join()
        discarded = len(self._fifo) + (self._held is not None)
        self._held = None
        if discarded:
            self._fifo.clear()
            self._stats["discarded_batches_total"] += discarded
            self._log.warning("job runner %r stopped; dropped %d queued batch(es)", self.name, discarded)
        self._leadership.release()
        self._log.info("job runner %r stopped scheduling", self.name)

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
