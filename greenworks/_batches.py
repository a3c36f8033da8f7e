"""
How a JobRunner runs the due jobs of its batches: `BatchRunner`.

A batch greenlet walks its jobs in input order: dedupe, then one of the
``limit`` slots shared by every batch (a stop is looked at first, always),
then the job goes to the ready queue. `start_batch` queues the jobs that
can start at once before the batch greenlet first runs, and a worker that
runs out of ready jobs while a batch waits for slots goes on with that batch
itself, so trivial jobs do not cost two switches per ``limit`` jobs (skips
and stop refusals stay with the batch greenlet). Worker greenlets (a
`~greenworks._workers.WorkerSet`) run what is ready. A worker is woken (or
spawned) only when a job is queued and no other worker is already on its
way; a worker that takes a job while more wait wakes the next one before
running its own, so a job that blocks never holds up the queue, and trivial
jobs run back to back on one worker with no switch. Every queued job holds a
slot, so at most ``limit`` workers ever exist. When no batch is live the
workers retire but one, which stays parked for the next tick (spawning a
greenlet per tick would put its cost before every tick's first job); a
stop retires it too.

A worker is named ``greenworks.jobs[<job id>]`` while it runs a job, so
``gevent.util.format_run_info()`` and `greenworks.monitor` show what runs.
Job timestamps are read as floats and made into datetimes after the batch,
off the path that starts jobs.
"""

import collections
import datetime
import functools
import math
import traceback
from typing import Any

import zope.event
from gevent import getcurrent
from gevent.event import Event

from greenworks._component import Lifecycle
from greenworks._results import Result, ResultStream, _Batch
from greenworks._workers import WorkerSet
from greenworks.context import with_cancel, with_timeout
from greenworks.events import JobFinished, JobSkipped, JobStarted
from greenworks.exceptions import (
    ContextError,
    DeadlineExceeded,
    PanicError,
    ShuttingDownError,
    SkippedDuplicateError,
)

#: A run past its timeout is interrupted this share of the timeout later (at most `MAX_TIMEOUT_GRACE` s).
TIMEOUT_GRACE = 0.1
MAX_TIMEOUT_GRACE = 1.0

__all__ = ["BatchRunner"]

# Who calls `BatchRunner._feed`: the batch greenlet, start_batch, or a worker out of ready jobs.
_WALKER, _START, _WORKER = 0, 1, 2
#: Worker names kept for reuse, at most (ids of pushed batches may never repeat).
_NAMES_KEPT = 10000


def _datetime(timestamp: float, tz: Any) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz)


class BatchRunner:
    """Runs batches of due jobs on shared workers, at most *limit* jobs at once.

    :param Lifecycle life: the JobRunner's lifecycle (clock, logger, tracking, events).
    :param limit: jobs running at once (an int, or ``math.inf``).
    :param bool dedupe: skip a job whose id is still in flight.
    :param ResultStream results: where each batch's Result goes.
    :param dict stats: the runner's counters, bumped here.
    :param zone: ``zone()`` returns the tzinfo of the Results' datetimes.
    :param bool input_order: order ``Result.items`` like the input.
    :param on_panic: ``on_panic(id, exc, stack)`` or None.
    :param on_skip: ``on_skip(id)`` or None.
    :param on_run: ``on_run(job_id, due, started, ended, error)`` after each run, or None.

    Per job, ``max_instances`` (a `~greenworks.jobs.Job` option) caps the
    runs of one id at once; without it *dedupe* means one. A job with a
    ``timeout`` (or a ``ctx`` parameter) is given a `Context` with that
    deadline, and is interrupted with a `DeadlineExceeded` if it is still
    running `TIMEOUT_GRACE` of the timeout after it.
    """

    def __init__(
        self,
        life: Lifecycle,
        *,
        limit: float,
        dedupe: bool,
        results: ResultStream,
        stats: dict[str, int],
        zone: Any,
        input_order: bool,
        on_panic: Any,
        on_skip: Any,
        on_run: Any = None,
    ) -> None:
        self._life = life
        self._clock = life.clock
        self._log = life.logger
        self._name = life.name
        self.limit = limit
        self.dedupe = dedupe
        self._results = results
        self._stats = stats
        self._zone = zone
        self._input_order = input_order
        self._on_panic = on_panic
        self._on_skip = on_skip
        self._on_run = on_run
        self._pool = WorkerSet(
            life, self._work, "greenworks.jobs[%s:worker %%d]" % life.name, first_index=1, on_exit=self._left
        )
        self.running = 0  # jobs holding a slot
        self.instances: dict[str, int] = {}  # id -> runs holding or waiting for a slot
        # The last run of each id: start, end, error. Three dicts rather than a
        # tuple per run: no allocation per job (1,000 jobs a tick, 1,000 tuples).
        self._last_started: dict[str, float] = {}
        self._last_ended: dict[str, float] = {}
        self._last_error: dict[str, BaseException | None] = {}
        self._slot = Event()  # set whenever a slot frees (or on stop)
        self._ready: collections.deque[_Batch] = collections.deque()  # a batch per job holding a slot
        self._batches: set[Any] = set()  # live batch greenlets
        # Set while no batch is live and, once stopping, no worker either (a warm parked one
        # does not count before that).
        self.idle = Event()
        self.idle.set()
        self._stopped = Event()  # set by stop(): ends a jitter delay early
        self._batch_seq = 0
        # Batches still walking -> the position of their next job, oldest first.
        self._cursor: dict[_Batch, int] = {}
        # Walking batches -> the position already counted in `instances` (waiting for a slot).
        self._counted: dict[_Batch, int] = {}
        # Skips start_batch decided, for the batch greenlet to finish: [(position, id, reason)].
        self._skips: dict[_Batch, list[tuple[int, str, str]]] = {}
        # Job id -> its worker's name while it runs (formatting it per run costs more than the run).
        self._names: dict[str, str] = {}
        self._slot_waiters = 0  # batch greenlets waiting for a slot: only they need _slot set
        self.stopping = False

    def stop(self, cancel: bool = False) -> None:
        """From now on no waiting job starts (they get `ShuttingDownError`). Never switches.

        With *cancel* the contexts of running jobs are cancelled too.
        """
        self.stopping = True
        self._slot.set()
        self._stopped.set()
        if cancel:
            self._pool.close()
        pool = self._pool
        if not self._batches and pool.workers:
            # The warm worker (and one on its way to park) leave now; the last one out sets idle.
            self.idle.clear()
            pool.retire(len(pool.workers))

    def greenlets(self) -> list[Any]:
        """The live batch and worker greenlets."""
        return [g for g in self._batches if not g.dead] + [w.greenlet for w in list(self._pool.workers)]

    def start_batch(self, batch: _Batch) -> None:
        """Run *batch* in a new batch greenlet. Never switches.

        A batch without jitter hands the jobs that can start at once to the
        workers here, before its greenlet first runs: the first job does not
        wait for the hub to start the batch greenlet.
        """
        self._batch_seq += 1
        name = "greenworks.jobs[%s:batch %d]" % (self._name, self._batch_seq)
        started = None
        if batch.delay <= 0:
            started = self._clock.time()
            self._cursor[batch] = 0
            self._feed(batch, _START)
            if self._ready:
                self._kick()
        self._batches.add(self._life.spawn(name, self._run_batch, batch, started))
        self.idle.clear()

    def _kick(self) -> None:
        """Wake (or spawn) a worker for the jobs just queued, unless one is on its way. Never switches."""
        pool = self._pool
        if not pool.waking and pool.wake() is None:
            pool.spawn()

    def _run_batch(self, batch: _Batch, started: float | None = None) -> None:
        clock = self._clock
        try:
            if started is None:
                if batch.delay > 0:
                    # Jitter: the batch holds no slot while it waits; a stop ends the wait.
                    clock.wait(self._stopped, batch.delay)
                started = clock.time()
            self._walk(batch)
            batch.pending -= 1
            if batch.pending:
                batch.done = Event()
                clock.wait(batch.done)
            ended = clock.time()
            tz = self._zone()
            self._remember(batch)
            batch.jobs = None  # the Result may wait unread: keep no job alive for it
            build = functools.partial(batch.job_results, tz, self._input_order)
            result = Result._deferred(batch.at, build, _datetime(started, tz), _datetime(ended, tz))
            self._results.put(result)
            if batch.reply is not None:
                batch.reply.set(result)
        finally:
            self._cursor.pop(batch, None)
            self._counted.pop(batch, None)
            self._skips.pop(batch, None)
            if batch.reply is not None and not batch.reply.ready():
                # Killed by a stop that timed out: the caller must still hear of it.
                batch.reply.set_exception(ShuttingDownError("runner: stopped before the batch finished"))
            batches = self._batches
            batches.discard(getcurrent())
            if not batches:
                pool = self._pool
                # Every job has finished: the workers are parked (or about to park, without
                # switching). One stays warm for the next batch unless stopping.
                pool.retire(len(pool.idle) - (0 if self.stopping else 1))
                if not self.stopping or not pool.workers:
                    self.idle.set()

    def last_run(self, job_id: str) -> tuple[float, float, BaseException | None] | None:
        """``(started, ended, error)`` of the id's last finished run (clock floats), or None."""
        started = self._last_started.get(job_id)
        if started is None:
            return None
        return started, self._last_ended[job_id], self._last_error[job_id]

    def _remember(self, batch: _Batch) -> None:
        last_started, last_ended, last_error = self._last_started, self._last_ended, self._last_error
        ids, started, ended, errors = batch.ids, batch.started, batch.ended, batch.errors
        for position in batch.finished:
            job_id = ids[position]
            last_started[job_id] = started[position]
            last_ended[job_id] = ended[position]
            last_error[job_id] = errors[position]

    def _walk(self, batch: _Batch) -> None:
        """Hand every job of *batch* to the workers, waiting for slots; skips and stop-refusals here.

        Runs in the batch greenlet. Where a slot is missing it waits; meanwhile
        a worker that runs out of ready jobs goes on with the batch itself
        (`_feed`), so trivial jobs do not cost a switch to this greenlet and
        back per ``limit`` jobs.
        """
        cursor = self._cursor
        cursor.setdefault(batch, 0)  # start_batch may have handed the first jobs already
        for position, job_id, reason in self._skips.pop(batch, ()):
            self._skip(batch, position, job_id, reason)
        slot = self._slot
        wait = self._clock.wait
        while True:
            complete = self._feed(batch, _WALKER)
            if self._ready:
                self._kick()
            if complete:
                return
            # Only a full limit stops _feed in the batch greenlet: wait for a slot.
            self._slot_waiters += 1
            try:
                while not self.stopping and self.running >= self.limit:
                    slot.clear()
                    wait(slot)
            finally:
                self._slot_waiters -= 1

    def _feed(self, batch: _Batch, mode: int) -> bool:
        """Queue the jobs of *batch* from its cursor while slots are free. Never switches (but see below).

        In input order: dedupe, then a slot (a stop is looked at first, always),
        then the ready queue. In the batch greenlet (*mode* `_WALKER`) a
        skipped duplicate and a job refused by a stop are finished here
        (``on_skip``, user code, may switch). `_START` (start_batch, before
        the batch greenlet runs) decides the skips as the walker would and
        leaves their finishing to it; `_WORKER` (a worker out of ready jobs)
        stops at a skip or a stop and leaves it to the batch greenlet. Neither
        switches.

        The caller wakes a worker for what it queued, unless it runs them itself.

        :return bool: True once every job of the batch was handed or finished.
        """
        ids = batch.ids
        position = self._cursor[batch]
        end = len(ids)
        if position >= end:
            return True
        default = 1 if self.dedupe else None
        instances = self.instances
        limit = self.limit
        ready = self._ready
        handed = batch.handed
        jobs = batch.jobs
        cursor = self._cursor
        counted = self._counted
        # The position already counted in `instances` while it waited for a slot, if any:
        # only the first job looked at can be, so the loop keeps no dict entry per job.
        waited = counted.pop(batch, None) if counted else None
        # Read once, and again after each call that may switch (only then can they change):
        # `running` is written back before such a call, and at the end.
        running = self.running
        stopping = self.stopping
        try:
            while position < end:
                job_id = ids[position]
                most = getattr(jobs[position], "max_instances", None) or default
                if most is not None and waited != position:
                    # Only jobs with a limit are counted: the common unlimited job costs nothing here.
                    count = instances.get(job_id, 0)
                    if count >= most:
                        reason = "dedupe" if most is default else "max_instances"
                        if mode == _START:
                            self._skips.setdefault(batch, []).append((position, job_id, reason))
                            position += 1
                            continue
                        if mode == _WORKER:
                            return False
                        cursor[batch] = position + 1
                        self.running = running
                        self._skip(batch, position, job_id, reason)
                        # on_skip and the event's subscribers may switch, and a worker go on meanwhile.
                        running, stopping = self.running, self.stopping
                        position = cursor[batch]
                        continue
                    # Counted from now on, also while it waits for a slot (in_flight_ids lists it).
                    instances[job_id] = count + 1
                waited = None
                # A stop wins over a free slot: checked first, every time.
                if stopping:
                    if mode != _WALKER:
                        if most is not None:
                            counted[batch] = position  # counted: the batch greenlet releases it
                        return False
                    cursor[batch] = position + 1
                    if most is not None:
                        self._release(job_id)
                    now = self._clock.time()
                    batch.finish(position, None, ShuttingDownError(), now, now)
                    self.running = running
                    self._life.emit(JobSkipped, job_id, batch.at, "limit")
                    running, stopping = self.running, self.stopping
                    position = cursor[batch]
                    continue
                if running >= limit:
                    if most is not None:
                        counted[batch] = position
                    return False
                running += 1
                batch.pending += 1
                handed.append(position)
                ready.append(batch)
                position += 1
            return True
        finally:
            cursor[batch] = position
            self.running = running

    def _work(self, worker: Any) -> None:
        pool = self._pool
        me = worker.greenlet
        idle_name = me.name
        ready = self._ready
        time = self._clock.time
        instances = self.instances
        cursor = self._cursor
        names = self._names
        pool.started(worker)
        while True:
            # Read once per wake-up rather than once or twice per job: zope.event's
            # list is changed in place by subscribing, and on_run is fixed.
            subscribers = zope.event.subscribers
            on_run = self._on_run
            # The end of the last job is the start of the next one while this
            # worker runs jobs back to back without switching (no event
            # subscriber, no on_run): one clock read per job instead of two.
            last_end = None
            while ready:
                batch = ready.popleft()
                position = batch.handed.popleft()
                job_id = batch.ids[position]
                if ready and not pool.waking and pool.wake() is None:
                    pool.spawn()
                name = names.get(job_id)
                if name is None:
                    if len(names) >= _NAMES_KEPT:
                        names.clear()
                    name = names[job_id] = "greenworks.jobs[%s]" % job_id
                me.name = name
                if subscribers:
                    last_end = None
                    self._life.emit(JobStarted, job_id, batch.at)
                job = batch.jobs[position]
                started_at = time() if last_end is None else last_end
                value: Any
                error: BaseException | None
                value = error = None
                timer = ctx = None
                try:
                    try:
                        if getattr(job, "timed", False):
                            ctx, timer = self._timed(worker, job)
                            value = job.run(ctx)
                        else:
                            value = job.run()
                        if isinstance(value, Exception):
                            # A returned exception is the job's error.
                            value, error = None, value
                    except DeadlineExceeded as exc:
                        error = exc
                    except ContextError as exc:
                        error = (
                            exc if ctx is not None and ctx.err is not None else self._panicked(job_id, exc)
                        )
                    except Exception as exc:
                        error = self._panicked(job_id, exc)
                    last_end = ended_at = time()
                    batch.values[position] = value
                    batch.errors[position] = error
                    batch.started[position] = started_at
                    batch.ended[position] = ended_at
                    batch.finished.append(position)
                    if subscribers:
                        last_end = None
                        lateness = max(0.0, started_at - batch.at.timestamp())
                        self._life.emit(
                            JobFinished, job_id, batch.at, value, error, ended_at - started_at, lateness
                        )
                    if on_run is not None:
                        last_end = None
                        on_run(job_id, batch.at, started_at, ended_at, error)
                finally:
                    # Also when the worker is killed mid-job: the slot and the batch move on.
                    if timer is not None:
                        timer.cancel()
                    if ctx is not None:
                        ctx.cancel()
                    worker.done += 1
                    self.running -= 1
                    if self._slot_waiters:
                        self._slot.set()
                    if instances:
                        # _release, inlined: once per job.
                        count = instances.get(job_id, 0) - 1
                        if count > 0:
                            instances[job_id] = count
                        else:
                            instances.pop(job_id, None)
                    batch.pending -= 1
                    if not batch.pending and batch.done is not None:
                        batch.done.set()
                if not ready and cursor:
                    # Out of ready jobs while a batch waits for slots: go on with it here.
                    for waiting in list(cursor):
                        if not self._feed(waiting, _WORKER) or ready:
                            break
            me.name = idle_name
            if worker.retire:
                return
            if not self._batches and (self.stopping or pool.idle):
                # Between batches one parked worker is enough (and none once stopping).
                return
            pool.park(worker)
            if worker.retire and not ready:
                return

    def _release(self, job_id: str) -> None:
        instances = self.instances
        if not instances:
            return
        count = instances.get(job_id, 0) - 1
        if count > 0:
            instances[job_id] = count
        else:
            instances.pop(job_id, None)

    def _timed(self, worker: Any, job: Any) -> tuple[Any, Any]:
        """A run's context (with the job's timeout as deadline) and the timer that interrupts it."""
        timeout = job.timeout
        if timeout is None:
            return with_cancel(self._pool.ctx), None
        ctx = with_timeout(self._pool.ctx, timeout)
        grace = min(MAX_TIMEOUT_GRACE, TIMEOUT_GRACE * timeout)
        error = DeadlineExceeded("job %r ran longer than its timeout of %ss" % (job.id, timeout))
        timer = self._clock.call_later(timeout + grace, self._pool.interrupt, worker, worker.done, error)
        return ctx, timer

    def _left(self, worker: Any) -> None:
        if not self._pool.workers and not self._batches:
            self.idle.set()

    def _panicked(self, job_id: str, exc: Exception) -> PanicError:
        stack = traceback.format_exc()
        error = PanicError(job_id, exc, stack)
        if self._on_panic is not None:
            try:
                self._on_panic(job_id, exc, stack)
            except Exception:
                self._log.exception("job runner %r: on_panic(%r) raised", self._name, job_id)
        return error

    def _skip(self, batch: _Batch, position: int, job_id: str, reason: str) -> None:
        self._stats["dedupe_skips_total"] += 1
        now = self._clock.time()
        batch.finish(position, None, SkippedDuplicateError(), now, now)
        self._life.emit(JobSkipped, job_id, batch.at, reason)
        if self._on_skip is not None:
            try:
                self._on_skip(job_id)
            except Exception:
                self._log.exception("job runner %r: on_skip(%r) raised", self._name, job_id)


#: What ``limit=None`` means: no limit.
NO_LIMIT = math.inf
