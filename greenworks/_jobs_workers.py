"""
The running half of :class:`greenworks.jobs.JobRunner`: batch greenlets and job workers.

A base class rather than a helper object, so the hot path reads the runner's
own attributes with no extra indirection. It relies on attributes that
``JobRunner.__init__`` sets: ``name``, ``dedupe``, ``limit``, ``results``,
``_clock``, ``_log``, ``_stats``, ``_timezone``, ``_input_order``,
``_on_panic``, ``_on_skip`` and the bookkeeping below (``_batches``,
``_ready``, ``_parked``, ``_in_flight``, ``_slot``, ``_idle``, ``_running``,
``_waking``, ``_workers``, ``_worker_seq``, ``_batch_seq``, ``_stopping``).
"""

import datetime
import functools
import traceback

from gevent import getcurrent
from gevent.event import Event

from greenworks import _greenlets
from greenworks._jobs_results import Result
from greenworks.exceptions import ErrShuttingDown, ErrSkippedDuplicate, PanicError

__all__ = []


def _datetime(timestamp, tz):
    return datetime.datetime.fromtimestamp(timestamp, tz)


class _BatchWorkers:
    """How a JobRunner runs the jobs of a batch: see the comment below."""

    __slots__ = ()

    # -- running -------------------------------------------------------------
    #
    # A batch greenlet walks its jobs in input order: dedupe, then one of the
    # ``limit`` slots shared by every batch (stop() first, always), then the
    # job goes to ``_ready``. Worker greenlets run what is in ``_ready``. A
    # worker is woken (or spawned) only when a job is queued and no other
    # worker is already on its way (``_waking``); a worker that takes a job
    # while more wait wakes the next one before running its own, so a job
    # that blocks never holds up the queue, and trivial jobs run back to back
    # on one worker with no switch. Every queued job holds a slot, so at most
    # ``limit`` workers ever exist. Workers retire when no batch is live.

    def _start_batch(self, batch):
        self._batch_seq += 1
        name = "greenworks.jobs[%s:batch %d]" % (self.name, self._batch_seq)
        greenlet = _greenlets.spawn(name, self._run_batch, batch)
        self._batches.add(greenlet)
        self._idle.clear()

    def _zone(self):
        return self._timezone or self._clock.now().tzinfo

    def _run_batch(self, batch):
        clock = self._clock
        started = clock.time()
        try:
            self._walk(batch)
            batch.pending -= 1
            if batch.pending:
                batch.done = Event()
                clock.wait(batch.done)
            ended = clock.time()
            tz = self._zone()
            batch.jobs = None  # the Result may wait unread: keep no job alive for it
            build = functools.partial(batch.job_results, tz, self._input_order)
            result = Result._deferred(batch.at, build, _datetime(started, tz), _datetime(ended, tz))
            self.results.put(result)
            self._stats.dropped_results_total = self.results.dropped
            if batch.reply is not None:
                batch.reply.set(result)
        finally:
            batches = self._batches
            batches.discard(getcurrent())
            if not batches:
                for wake in self._parked:
                    self._waking += 1
                    wake.set()
                self._parked.clear()
                if not self._workers:
                    self._idle.set()

    def _walk(self, batch):
        dedupe = self.dedupe
        in_flight = self._in_flight
        limit = self.limit
        ready = self._ready
        handed = batch.handed
        ids = batch.ids
        for position in range(len(ids)):
            job_id = ids[position]
            if dedupe:
                if job_id in in_flight:
                    self._skip(batch, position, job_id)
                    continue
                in_flight.add(job_id)
            # stop() wins over a free slot: checked first, every time.
            while not self._stopping and self._running >= limit:
                self._slot.clear()
                self._clock.wait(self._slot)
            if self._stopping:
                in_flight.discard(job_id)
                now = self._clock.time()
                batch.finish(position, None, ErrShuttingDown, now, now)
                continue
            self._running += 1
            batch.pending += 1
            handed.append(position)
            ready.append(batch)
            if not self._waking:
                self._wake_worker()

    def _wake_worker(self):
        self._waking += 1
        if self._parked:
            self._parked.pop().set()
            return
        self._workers += 1
        self._worker_seq += 1
        name = "greenworks.jobs[%s:worker %d]" % (self.name, self._worker_seq)
        _greenlets.spawn(name, self._work, name)

    def _work(self, name):
        me = getcurrent()
        ready = self._ready
        time = self._clock.time
        wake = None
        parked = False
        try:
            while True:
                self._waking -= 1
                while ready:
                    batch = ready.popleft()
                    position = batch.handed.popleft()
                    job_id = batch.ids[position]
                    if ready and not self._waking:
                        self._wake_worker()
                    # format_run_info shows the job a worker runs (its idle name otherwise).
                    me.name = "greenworks.jobs[%s]" % job_id
                    started_at = time()
                    value = error = None
                    try:
                        try:
                            value = batch.jobs[position].run()
                            if isinstance(value, Exception):
                                # Go's `return nil, err`: a returned exception is the job's error.
                                value, error = None, value
                        except Exception as exc:
                            error = self._panicked(job_id, exc)
                        batch.finish(position, value, error, started_at, time())
                    finally:
                        # Also when the worker is killed mid-job: the slot and the batch move on.
                        self._running -= 1
                        self._slot.set()
                        if self.dedupe:
                            self._in_flight.discard(job_id)
                        batch.pending -= 1
                        if not batch.pending and batch.done is not None:
                            batch.done.set()
                me.name = name
                if not self._batches:
                    return
                if wake is None:
                    wake = Event()
                else:
                    wake.clear()
                self._parked.append(wake)
                parked = True
                self._clock.wait(wake)
                parked = False
        finally:
            if parked:  # killed while parked: leave the books as if never parked
                if wake in self._parked:
                    self._parked.remove(wake)
                else:
                    self._waking -= 1
            self._workers -= 1
            if not self._workers and not self._batches:
                self._idle.set()

    def _panicked(self, job_id, exc):
        stack = traceback.format_exc()
        error = PanicError(job_id, exc, stack)
        if self._on_panic is not None:
            try:
                self._on_panic(job_id, exc, stack)
            except Exception:
                self._log.exception("job runner %r: on_panic(%r) raised", self.name, job_id)
        return error

    def _skip(self, batch, position, job_id):
        self._stats.dedupe_skips_total += 1
        now = self._clock.time()
        batch.finish(position, None, ErrSkippedDuplicate, now, now)
        if self._on_skip is not None:
            try:
                self._on_skip(job_id)
            except Exception:
                self._log.exception("job runner %r: on_skip(%r) raised", self.name, job_id)
