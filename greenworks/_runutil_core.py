"""
Shared pieces of :mod:`greenworks.runutil`: adapters from plain callables,
argument checks, and named workers (subsystems). Import them from
:mod:`greenworks.runutil`; this module is private.
"""

import logging
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from greenworks import _checks
from greenworks._subsystem import enter
from greenworks.backoff import BackoffLike
from greenworks.context import Context
from greenworks.exceptions import ContextError, invalid_argument
from greenworks.interfaces import IContext, IRunOnce, IWorker

# Logged under the public module name, which is what users configure.
logger = logging.getLogger("greenworks.runutil")


# -- adapting plain callables -------------------------------------------------


@implementer(IWorker)
class WorkerFunc:
    """Default implementation of `IWorker` over a callable ``fn(ctx)``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Context], Any]) -> None:
        if not callable(fn):
            raise invalid_argument("fn", fn, "a callable f(ctx)")
        self.fn = fn

    def run(self, ctx: Context) -> Any:
        return self.fn(ctx)

    def __repr__(self) -> str:
        return "WorkerFunc(%r)" % (self.fn,)


@implementer(IRunOnce)
class JobFunc:
    """Default implementation of `IRunOnce` over a callable ``fn(ctx)``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Context], Any]) -> None:
        if not callable(fn):
            raise invalid_argument("fn", fn, "a callable f(ctx)")
        self.fn = fn

    def run_once(self, ctx: Context) -> Any:
        return self.fn(ctx)

    def __repr__(self) -> str:
        return "JobFunc(%r)" % (self.fn,)


def worker_func(fn: Callable[[Context], Any]) -> WorkerFunc:
    """Return *fn* (a callable ``fn(ctx)``) as an `IWorker`."""
    return WorkerFunc(fn)


def job_func(fn: Callable[[Context], Any]) -> JobFunc:
    """Return *fn* (a callable ``fn(ctx)``) as an `IRunOnce`."""
    return JobFunc(fn)


def _worker_call(worker: Any, argument: str = "worker") -> Any:
    """Return the callable that runs *worker*: ``worker.run`` or *worker* itself."""
    if IWorker.providedBy(worker):
        return worker.run
    if callable(worker):
        return worker
    run = getattr(worker, "run", None)
    if callable(run):
        return run
    raise invalid_argument(argument, worker, "an IWorker or a callable f(ctx)")


def _job_call(job: Any, argument: str = "job") -> Any:
    """Return the callable that runs *job*: ``job.run_once`` or *job* itself."""
    if IRunOnce.providedBy(job):
        return job.run_once
    if callable(job):
        return job
    run_once = getattr(job, "run_once", None)
    if callable(run_once):
        return run_once
    raise invalid_argument(argument, job, "an IRunOnce or a callable f(ctx)")


def _check_ctx(ctx: object) -> None:
    if not IContext.providedBy(ctx):
        raise invalid_argument("ctx", ctx, "a greenworks Context")


def _check_backoff(backoff: BackoffLike) -> BackoffLike:
    if not callable(getattr(backoff, "duration", None)):
        raise invalid_argument("backoff", backoff, "an IBackoff (an object with duration(attempt))")
    return backoff


def _stopped_by(exc: BaseException, ctx: Context) -> bool:
    """Whether *exc* is the graceful "my context is done" exit rather than a failure."""
    return isinstance(exc, ContextError) and ctx.err is not None


def _describe(worker: object) -> str:
    name = getattr(worker, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(worker, "__name__", None) or type(worker).__name__


# -- naming -------------------------------------------------------------------


@implementer(IWorker)
class NamedWorker:
    """Default implementation of `IWorker` that runs a worker as a named subsystem.

    Build it with :func:`named_worker`. Each ``run(ctx)`` enters a new
    subsystem *name* below the caller's (so the path reads
    ``/workers/CommitFetcher/Commits``) with a fresh trace id, visible to
    :func:`current_trace`, :func:`current_subsystem` and
    :class:`SubsystemFilter` from the worker's greenlet and any greenlet it
    spawns, and leaves it when the worker exits.
    """

    __slots__ = ("_name", "_worker", "_run_worker")

    def __init__(self, name: str, worker: Any) -> None:
        self._name = _checks.name("name", name)
        self._run_worker = _worker_call(worker)
        self._worker = worker

    @property
    def name(self) -> str:
        """The subsystem name, used verbatim (str, read-only)."""
        return self._name

    def run(self, ctx: Context) -> Any:
        with enter(self._name) as trace:
            logger.debug("subsystem %s started, trace id %s", trace.subsystem, trace.trace_id)
            return self._run_worker(ctx)

    def __repr__(self) -> str:
        return "NamedWorker(%r, %r)" % (self._name, self._worker)


def named_worker(name: str, worker: Any) -> NamedWorker:
    """Return *worker* running as subsystem *name*; see :class:`NamedWorker`.

    The name is used verbatim (no ``%`` formatting).
    """
    return NamedWorker(name, worker)


def type_name(obj: object) -> str:
    """Return ``"<module>/<Class>"`` for *obj*'s type (or for *obj* itself if it is a class).

    The Python spelling of Go's ``%T`` with ``*`` trimmed and the first ``.``
    turned into ``/``: ``myapp.workers.CommitFetcher`` gives
    ``"myapp.workers/CommitFetcher"``.
    """
    cls = obj if isinstance(obj, type) else type(obj)
    return "%s/%s" % (cls.__module__, cls.__qualname__)


def named_worker_from_type(obj: object, worker: Any) -> NamedWorker:
    """Return *worker* running as the subsystem named after *obj*'s type (see :func:`type_name`)."""
    return NamedWorker(type_name(obj), worker)
