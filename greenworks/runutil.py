"""
Run utilities: compose long-running workers and one-shot jobs (seed 004, rebuy ``runutil``).

Two contracts, both taking a :class:`~greenworks.context.Context`:

- a **worker** (`IWorker`, or any callable ``f(ctx)``) runs until its
  context is done; returning means "I stopped", raising means "I failed";
- a **job** (`IRunOnce`, or any callable ``f(ctx)``) runs to completion once.

Building blocks, each an object you can nest::

    worker = DeclarativeWorker(
        "Commits",
        repeat(5.0, job_func(fetch_commits)),            # run every 5 s
        retry=ExponentialBackoff(1.0, 60.0, 0.5),        # restart after failures
    )
    run_all_workers(ctx, worker, other_worker)            # until ctx ends or one stops

Cancellation is cooperative: every wait here is a ``ctx.sleep`` on the
context's clock, so cancelling wakes it at once and a
:class:`~greenworks.testing.FakeClock` drives it in tests. A worker or job that
raises a :class:`~greenworks.exceptions.ContextError` (``Canceled`` or
``DeadlineExceeded``) *after its context is done* has stopped gracefully, not
failed: that is the Python spelling of "return because I was cancelled"
(Go's probed quirk of reporting ``context.Canceled`` as a failure is not kept).
``GreenletExit``, ``KeyboardInterrupt`` and ``SystemExit`` are never caught
as errors.

Workers started with the dependency-injection helpers live in a
``zope.interface.registry.Components``: see :func:`provide_worker` and
:func:`run_provided_workers`.
"""

import logging
import math
from collections.abc import Callable
from typing import Any

import gevent
from zope.interface import implementer

from greenworks._checks import is_real
from greenworks._runutil_core import (
    JobFunc,
    NamedWorker,
    WorkerFunc,
    _check_backoff,
    _describe,
    _job_call,
    _stopped_by,
    _worker_call,
    job_func,
    named_worker,
    named_worker_from_type,
    type_name,
    worker_func,
)
from greenworks._runutil_run import (
    provide_worker,
    provided_workers,
    run_all_jobs,
    run_all_workers,
    run_provided_workers,
)
from greenworks._subsystem import SubsystemFilter, Trace, current_subsystem, current_trace
from greenworks.backoff import BackoffLike
from greenworks.context import Context
from greenworks.exceptions import WorkerExitedPrematurely, invalid_argument
from greenworks.interfaces import IRunOnce, IWorker

__all__ = [
    "DeclarativeWorker",
    "JobFunc",
    "NamedWorker",
    "Repeat",
    "Retry",
    "RetryJob",
    "SubsystemFilter",
    "Trace",
    "WorkerExitedPrematurely",
    "WorkerFunc",
    "current_subsystem",
    "current_trace",
    "job_func",
    "named_worker",
    "named_worker_from_type",
    "provide_worker",
    "provided_workers",
    "repeat",
    "retry",
    "retry_job",
    "run_all_jobs",
    "run_all_workers",
    "run_provided_workers",
    "type_name",
    "wait",
    "worker_func",
]

logger = logging.getLogger(__name__)

#: ``on_run(error, seconds)``: called after every run of a :class:`Repeat`.
_OnRun = Callable[[Exception | None, float], object]


# -- waiting and repeating ----------------------------------------------------


def wait(ctx: Context, seconds: float) -> None:
    """Block for *seconds* on ``ctx.clock``, or until *ctx* is done, whichever is first.

    ``seconds <= 0`` returns at once. Returns None either way (ask ``ctx.err``
    to know which happened).

    :raises InvalidArgument: if *seconds* is not a number (NaN included).
    """
    if not is_real(seconds) or math.isnan(seconds):
        raise invalid_argument("seconds", seconds, "a number of seconds")
    if seconds > 0:
        ctx.sleep(seconds)


@implementer(IWorker)
class Repeat:
    """Default implementation of `IWorker` that runs a job on a fixed-rate grid.

    Build it with :func:`repeat`. ``run(ctx)`` runs the job at
    ``t0 + k * interval`` (``k = 1, 2, ...``), measured on ``ctx.clock`` from
    the moment ``run`` starts, or from the end of the immediate first run with
    *start_immediately*; it is not a sleep *between* runs. Like Go's ticker,
    a job that overruns its slot runs again straight after (one missed tick is
    kept) and further missed ticks are dropped, so the runs settle back on the
    grid. A job never overlaps itself.

    With *on_run*, ``on_run(error, seconds)`` is called after every run
    (``error`` None on success, ``seconds`` on ``ctx.clock``), inside the
    worker's subsystem: the hook for health checkpoints (rebuy v10) or
    tracing. An exception from the hook is logged and otherwise ignored.

    ``run`` returns None once ctx is done (checked before every run; the job is
    never started with a done context, not even the immediate one), and raises
    the job's first error: Repeat never retries, wrap it in :func:`retry`.
    """

    __slots__ = ("_interval", "_job", "_run_job", "_start_immediately", "_on_run")

    def __init__(
        self, interval: float, job: Any, start_immediately: bool = False, on_run: _OnRun | None = None
    ) -> None:
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not math.isfinite(interval)
            or interval <= 0
        ):
            raise invalid_argument("interval", interval, "a finite number of seconds > 0")
        self._interval = float(interval)
        self._run_job = _job_call(job)
        self._job = job
        self._start_immediately = bool(start_immediately)
        if on_run is not None and not callable(on_run):
            raise invalid_argument("on_run", on_run, "None or a callable on_run(error, seconds)")
        self._on_run = on_run

    @property
    def interval(self) -> float:
        """Seconds between the starts of runs (float, read-only)."""
        return self._interval

    def _run_once(self, ctx: Context) -> bool:
        """Run the job once; return False if it stopped because ctx is done."""
        on_run = self._on_run
        if on_run is None:
            try:
                self._run_job(ctx)
            except Exception as exc:
                if _stopped_by(exc, ctx):
                    return False
                raise
            return True
        clock = ctx.clock
        started = clock.monotonic()
        error: Exception | None = None
        try:
            self._run_job(ctx)
        except Exception as exc:
            error = exc
        self._report(on_run, error, clock.monotonic() - started)
        if error is not None:
            if _stopped_by(error, ctx):
                return False
            raise error
        return True

    @staticmethod
    def _report(on_run: _OnRun, error: Exception | None, seconds: float) -> None:
        try:
            on_run(error, seconds)
        except Exception:
            # A broken health or tracing hook must not stop the job it watches.
            logger.exception("repeat: on_run hook %r failed", on_run)

    def run(self, ctx: Context) -> None:
        if ctx.err is not None:
            return None
        clock = ctx.clock
        interval = self._interval
        if self._start_immediately and not self._run_once(ctx):
            return None
        origin = clock.monotonic()
        index = 1
        while True:
            delay = origin + index * interval - clock.monotonic()
            if delay > 0:
                if not ctx.sleep(delay):
                    return None
            else:
                # Overran: run again now, but let a pending cancel land first.
                gevent.sleep(0)
                if ctx.err is not None:
                    return None
            started = clock.monotonic()
            # Ticks that passed while the previous run was busy are dropped;
            # the next run is due at the first grid point after this start.
            index = max(index + 1, int((started - origin) // interval) + 1)
            if not self._run_once(ctx):
                return None

    def __repr__(self) -> str:
        return "Repeat(%r, %r%s)" % (
            self._interval,
            self._job,
            ", start_immediately=True" if self._start_immediately else "",
        )


def repeat(
    interval: float, job: Any, *, start_immediately: bool = False, on_run: _OnRun | None = None
) -> Repeat:
    """Return a worker that runs *job* every *interval* seconds until cancelled; see :class:`Repeat`.

    :param float interval: seconds between the starts of two runs, ``> 0``.
    :param job: an `IRunOnce` or a callable ``f(ctx)``.
    :keyword bool start_immediately: run once at start, before the first
        tick (Go's ``WithStartImmediately()``); the grid starts after that run.
    :keyword on_run: ``on_run(error, seconds)`` after each run, see :class:`Repeat`.
    :raises InvalidArgument: for ``interval <= 0`` (Go panicked lazily in
        ``Run``), a *job* that is neither, or a non-callable *on_run*.
    """
    return Repeat(interval, job, start_immediately, on_run)


# -- retrying -----------------------------------------------------------------


@implementer(IWorker)
class Retry:
    """Default implementation of `IWorker` that restarts a worker forever.

    Build it with :func:`retry`. ``run(ctx)`` runs the worker at once, then
    loops until ctx is done: wait ``backoff.duration(max(1, attempt))``
    (cancellably), then run the worker again. An error is logged at WARNING
    and increments ``attempt`` (consecutive failures); a normal return resets
    it to 0, and the restart still waits the backoff's first step
    (``duration(1)``), as tenacity and systemd's ``RestartSec`` do: a worker
    that returns at once restarts at the backoff's pace, never in a busy
    loop. Once ctx is done the worker is never started again, even if it was
    cancelled during the wait. Always returns None.

    With a backoff that waits 0 s, Retry still yields to the hub between
    restarts so that a cancel can reach it.
    """

    __slots__ = ("_worker", "_run_worker", "_backoff", "_logger")

    def __init__(self, worker: Any, backoff: BackoffLike, logger: Any = None) -> None:
        self._run_worker = _worker_call(worker)
        self._worker = worker
        self._backoff = _check_backoff(backoff)
        self._logger = logger if logger is not None else logging.getLogger(__name__)

    @property
    def name(self) -> str:
        """The wrapped worker's name, if it has one (str)."""
        return _describe(self._worker)

    def run(self, ctx: Context) -> None:
        attempt = 0
        first = True
        while ctx.err is None:
            if not first:
                # Every restart waits at least the backoff's first step, after
                # a normal return too: a worker that returns at once must not
                # restart in a busy loop.
                delay = self._backoff.duration(max(1, attempt))
                if delay > 0:
                    if not ctx.sleep(delay):
                        break
                else:
                    gevent.sleep(0)
                    if ctx.err is not None:
                        break
            first = False
            try:
                self._run_worker(ctx)
            except Exception as exc:
                if _stopped_by(exc, ctx):
                    break
                attempt += 1
                self._logger.warning(
                    "worker %s failed %d times: %s", _describe(self._worker), attempt, exc, exc_info=exc
                )
            else:
                attempt = 0
        return None

    def __repr__(self) -> str:
        return "Retry(%r, %r)" % (self._worker, self._backoff)


def retry(worker: Any, backoff: BackoffLike, *, logger: Any = None) -> Retry:
    """Return a worker that restarts *worker* after every exit until cancelled; see :class:`Retry`.

    :param worker: an `IWorker` or a callable ``f(ctx)``.
    :param IBackoff backoff: the wait before each restart.
    :keyword logging.Logger logger: for the WARNING per failure (default this module's).
    :raises InvalidArgument: if *worker* or *backoff* is missing or of the wrong kind.
    """
    return Retry(worker, backoff, logger)


@implementer(IRunOnce)
class RetryJob:
    """Default implementation of `IRunOnce` that retries a job until it succeeds.

    Build it with :func:`retry_job` (rebuy-go-sdk v10's ``RetryJob``).
    ``run_once(ctx)`` runs the job; on success it returns the job's return
    value. On an error it logs a WARNING, waits ``backoff.duration(attempt)``
    with ``attempt`` = failures so far, and tries again. Once ctx is done it
    raises ctx's error (`Canceled` or `DeadlineExceeded`) without starting the
    job again.
    """

    __slots__ = ("_job", "_run_job", "_backoff", "_logger")

    def __init__(self, job: Any, backoff: BackoffLike, logger: Any = None) -> None:
        self._run_job = _job_call(job)
        self._job = job
        self._backoff = _check_backoff(backoff)
        self._logger = logger if logger is not None else logging.getLogger(__name__)

    def run_once(self, ctx: Context) -> Any:
        attempt = 0
        while True:
            ctx.raise_if_done()
            try:
                return self._run_job(ctx)
            except Exception as exc:
                if _stopped_by(exc, ctx):
                    raise
                attempt += 1
                self._logger.warning(
                    "job %s failed %d times: %s", _describe(self._job), attempt, exc, exc_info=exc
                )
            wait(ctx, self._backoff.duration(attempt))

    def __repr__(self) -> str:
        return "RetryJob(%r, %r)" % (self._job, self._backoff)


def retry_job(job: Any, backoff: BackoffLike, *, logger: Any = None) -> RetryJob:
    """Return a job that runs *job* until it succeeds; see :class:`RetryJob`.

    :param job: an `IRunOnce` or a callable ``f(ctx)``.
    :param IBackoff backoff: the wait after each failure.
    :raises InvalidArgument: if *job* or *backoff* is missing or of the wrong kind.
    """
    return RetryJob(job, backoff, logger)


@implementer(IWorker)
class DeclarativeWorker:
    """Default implementation of `IWorker` composed from fields (Go's ``DeclarativeWorker``).

    ``run`` runs ``Retry(Named(worker))``: the name is applied inside the
    retry loop, so every attempt gets a new trace id.

    :param str name: the subsystem name; ``""`` leaves the worker unnamed.
    :param worker: an `IWorker` or a callable ``f(ctx)``; usually a
        :func:`repeat` of a job.
    :param IBackoff retry: restart the worker with this backoff; ``None``
        runs it once.
    :raises InvalidArgument: for a missing *worker* (Go panicked at run time),
        a non-str *name* or a *retry* without ``duration()``.
    """

    __slots__ = ("_name", "_worker", "_retry", "_chain")

    def __init__(
        self, name: str, worker: Any, retry: BackoffLike | None = None, *, logger: Any = None
    ) -> None:
        if not isinstance(name, str):
            raise invalid_argument("name", name, "a str ('' for unnamed)")
        if worker is None:
            raise invalid_argument("worker", worker, "an IWorker or a callable f(ctx)")
        chain: Any = worker
        _worker_call(worker)
        if name:
            chain = NamedWorker(name, chain)
        if retry is not None:
            chain = Retry(chain, retry, logger)
        self._name = name
        self._worker = worker
        self._retry = retry
        self._chain = _worker_call(chain)

    @property
    def name(self) -> str:
        """The subsystem name, ``""`` when unnamed (str, read-only)."""
        return self._name

    @property
    def worker(self) -> Any:
        """The wrapped worker (read-only)."""
        return self._worker

    @property
    def retry(self) -> BackoffLike | None:
        """The restart backoff, or None for a single run (read-only)."""
        return self._retry

    def run(self, ctx: Context) -> Any:
        return self._chain(ctx)

    def __repr__(self) -> str:
        return "DeclarativeWorker(%r, %r, retry=%r)" % (self._name, self._worker, self._retry)
