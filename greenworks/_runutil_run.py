"""
Running many workers or jobs at once, and the registry of provided workers.
Import these from :mod:`greenworks.runutil`; this module is private.
"""

import sys
from collections.abc import Iterable
from typing import Any

import gevent
from zope.interface.interfaces import IComponents

from greenworks import _greenlets
from greenworks._runutil_core import (
    NamedWorker,
    _check_ctx,
    _describe,
    _job_call,
    _stopped_by,
    _worker_call,
    named_worker_from_type,
)
from greenworks.context import Context, with_cancel
from greenworks.exceptions import WorkerExitedPrematurely, invalid_argument
from greenworks.interfaces import IWorkerConfigurer

if sys.version_info >= (3, 11):  # pragma: no cover - depends on the interpreter
    _ExceptionGroup = ExceptionGroup  # noqa: F821
else:  # pragma: no cover
    from exceptiongroup import ExceptionGroup as _ExceptionGroup


# -- running many -------------------------------------------------------------


def _join_or_kill(greenlets: Iterable[Any]) -> None:
    """Wait for *greenlets*; if the caller is interrupted, kill them (blocking) and re-raise."""
    try:
        gevent.joinall(greenlets)
    finally:
        live = [g for g in greenlets if not g.dead]
        if live:
            gevent.killall(live)


def _raise_group(what: str, errors: list[Exception], total: int) -> None:
    if errors:
        raise _ExceptionGroup("%s: %d of %d failed" % (what, len(errors), total), errors)


def run_all_workers(ctx: Context, *workers: Any) -> None:
    """Run every worker in its own greenlet until all have exited.

    Each worker runs in a greenlet named ``greenworks.runutil[<name>]`` with a
    child context of *ctx*. The first worker to exit, for any reason, cancels
    that child context, so all the others are asked to stop; so does *ctx*
    ending. The call blocks until every worker returned. Outcomes, per worker:

    - raised an exception: collected (a `ContextError` raised after the
      context is done counts as a graceful stop, see the module docstring);
    - returned while nothing had been cancelled: a
      `WorkerExitedPrematurely` naming it is collected;
    - returned after the cancellation: graceful, nothing collected.

    If the calling greenlet is killed while waiting, the workers are killed
    too (``GreenletExit`` in each) before the kill propagates. No greenlet is
    left running when this returns or raises.

    :param IContext ctx: the parent context.
    :param workers: `IWorker` objects or callables ``f(ctx)``; none at all
        returns None at once.
    :return: None when nothing was collected.
    :raises ExceptionGroup: of every collected error, in completion order
        (match with ``except* WorkerExitedPrematurely``).
    :raises InvalidArgument: before anything starts, for a bad *ctx* or worker.
    """
    _check_ctx(ctx)
    calls = [(_describe(w), _worker_call(w, "workers[%d]" % i)) for i, w in enumerate(workers)]
    if not calls:
        return None
    errors: list[Exception] = []
    child = with_cancel(ctx)

    def body(name: str, call: Any) -> None:
        try:
            call(child)
        except Exception as exc:
            if not _stopped_by(exc, child):
                errors.append(exc)
        else:
            if child.err is None:
                errors.append(WorkerExitedPrematurely("worker exited prematurely: %s" % name))
        finally:
            child.cancel()

    greenlets = [_greenlets.spawn("greenworks.runutil[%s]" % name, body, name, call) for name, call in calls]
    try:
        _join_or_kill(greenlets)
    finally:
        child.cancel()
    _raise_group("run_all_workers", errors, len(calls))
    return None


def run_all_jobs(ctx: Context, *jobs: Any) -> None:
    """Run every job concurrently, each once, with the same *ctx*; wait for all.

    Unlike :func:`run_all_workers` nothing is cancelled when a job fails, and
    there is no concurrency limit. Jobs run in greenlets named
    ``greenworks.runutil[job:<name>]``; a kill of the caller kills them too.

    :param jobs: `IRunOnce` objects or callables ``f(ctx)``.
    :return: None when every job succeeded (or there were none).
    :raises ExceptionGroup: of every job's exception, in completion order.
    :raises InvalidArgument: before anything starts, for a bad *ctx* or job.
    """
    _check_ctx(ctx)
    calls = [(_describe(j), _job_call(j, "jobs[%d]" % i)) for i, j in enumerate(jobs)]
    if not calls:
        return None
    errors: list[Exception] = []

    def body(call: Any) -> None:
        try:
            call(ctx)
        except Exception as exc:
            errors.append(exc)

    greenlets = [_greenlets.spawn("greenworks.runutil[job:%s]" % name, body, call) for name, call in calls]
    _join_or_kill(greenlets)
    _raise_group("run_all_jobs", errors, len(calls))
    return None


# -- dependency injection -----------------------------------------------------


def _check_registry(registry: object) -> None:
    if not IComponents.providedBy(registry):
        raise invalid_argument("registry", registry, "a zope.interface.registry.Components")


def _is_configurer(obj: object) -> bool:
    if IWorkerConfigurer.providedBy(obj):
        return True
    return not callable(obj) and callable(getattr(obj, "workers", None))


def provide_worker(registry: Any, configurer_or_factory: Any) -> None:
    """Register an `IWorkerConfigurer` with *registry* for :func:`run_provided_workers`.

    Registrations are subscription adapters of the registry itself
    (``required=(IComponents,)``, ``provided=IWorkerConfigurer``), the zope
    counterpart of dig's ``group:"worker"``:

    - an object providing `IWorkerConfigurer` (or any non-callable object
      with a ``workers()`` method) is registered as it is;
    - any other callable is a factory, called as ``factory(registry)`` each
      time :func:`run_provided_workers` runs, so it can look its own
      dependencies up with ``registry.getUtility(...)``. It may return None
      to provide nothing.

    Several registrations add up; they run in registration order.

    :raises InvalidArgument: for a *registry* that is not a ``Components`` or
        something that is neither a configurer nor callable.
    """
    _check_registry(registry)
    if _is_configurer(configurer_or_factory):
        configurer = configurer_or_factory

        def factory(_registry: object) -> Any:
            return configurer

    elif callable(configurer_or_factory):
        factory = configurer_or_factory
    else:
        raise invalid_argument(
            "configurer_or_factory",
            configurer_or_factory,
            "an IWorkerConfigurer or a callable factory(registry)",
        )
    registry.registerSubscriptionAdapter(factory, required=(IComponents,), provided=IWorkerConfigurer)


def provided_workers(registry: Any) -> list[NamedWorker]:
    """Return every worker of every configurer provided to *registry*, each named after its configurer.

    Calls the factories (see :func:`provide_worker`), skips None configurers
    and None workers, and wraps each worker in :func:`named_worker_from_type`
    of its configurer.

    :raises InvalidArgument: if a factory returned something without ``workers()``.
    """
    _check_registry(registry)
    workers: list[NamedWorker] = []
    for configurer in registry.subscribers((registry,), IWorkerConfigurer):
        if configurer is None:
            continue
        if not callable(getattr(configurer, "workers", None)):
            raise invalid_argument("configurer", configurer, "an IWorkerConfigurer (with workers())")
        for worker in configurer.workers() or ():
            if worker is not None:
                workers.append(named_worker_from_type(configurer, worker))
    return workers


def run_provided_workers(ctx: Context, registry: Any) -> None:
    """Run every provided worker under :func:`run_all_workers`; same return and errors.

    The subsystem of each worker is ``/<module>/<ConfigurerClass>`` followed by
    any name the worker gives itself (e.g. a :class:`DeclarativeWorker`'s).
    """
    _check_ctx(ctx)
    return run_all_workers(ctx, *provided_workers(registry))
