"""
Prometheus export of greenworks events (the ``prometheus`` extra: ``pip install 'greenworks[prometheus]'``).

::

    from greenworks import metrics

    exported = metrics.install()          # subscribe to the events
    exported.register(dispatcher)         # its gauges, read from stats()
    # serve it: greenworks.status.wsgi_app(...) answers /metrics,
    # or prometheus_client.start_http_server(9100)

What is exported, each with a ``name`` label (the component's name):

========================================== ============ ====================================
metric                                     type         from
========================================== ============ ====================================
``greenworks_workers{name}``               gauge        ``stats()`` of registered components
``greenworks_busy_workers{name}``          gauge        ``stats()`` (JobRunner: jobs in flight)
``greenworks_buffered_tasks{name}``        gauge        ``stats()`` (JobRunner: batches queued)
``greenworks_tasks_total{name,outcome}``   counter      outcome ``failed``/``timed_out``/``rejected``:
                                                        `TaskFailed`/`TaskTimedOut`/`TaskRejected`;
                                                        ``ok``: a registered Dispatcher's
                                                        ``executed - failed - timed_out``
``greenworks_pool_scaled_total``           counter      `PoolScaled` ``{name,reason}``
``greenworks_worker_exits_total``          counter      `WorkerExited` ``{name,outcome}`` (ok/error)
``greenworks_job_runs_total``              counter      `JobFinished` ``{name,job,outcome}``:
                                                        ``ok``, ``error``, ``timed_out``
``greenworks_job_skips_total``             counter      `JobSkipped` ``{name,job,reason}``
``greenworks_job_duration_seconds``        histogram    `JobFinished` ``duration`` ``{name,job}``
``greenworks_job_lateness_seconds``        histogram    `JobFinished` ``lateness`` ``{name,job}``
``greenworks_ticks_missed_total{name}``    counter      `TicksMissed`
``greenworks_task_restarts_total``         counter      `TaskRestarted` ``{name,task}``
``greenworks_task_give_ups_total``         counter      `TaskGaveUp` ``{name,task}``
``greenworks_leader{name}``                gauge        1 after `LeadershipAcquired`, 0 after
                                                        `LeadershipLost` or `ComponentStopped`
``greenworks_hub_blocks_total``            counter      `HubBlocked` ``{component}``
``greenworks_hub_blocked_seconds_total``   counter      `HubBlocked` ``{component}``
========================================== ============ ====================================

Why the gauges come from ``stats()`` and not from events: only the pool size
has an event (`PoolScaled`); busy and buffered change on every task, and an
event per task would cost every task. So they are read when they are wanted:
at scrape time in one process, every *refresh* seconds in multiprocess mode
(a scrape reads files there, not the components). For the same reason the
Dispatcher emits no event per successful task, and ``outcome="ok"`` comes from
its own counters, for the Dispatchers you :meth:`~Metrics.register`.

Under ``gunicorn -w N`` (prometheus_client's multiprocess mode): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before gunicorn starts
(prometheus_client reads it when it is imported), call :func:`install` in each
worker, serve ``/metrics`` from any worker (it reads every worker's files) and
mark dead workers in the master's ``child_exit`` hook::

    def child_exit(server, worker):
        greenworks.metrics.mark_process_dead(worker.pid)

Gauges are ``livesum``: the live workers' values added up (the leader gauge
then says how many workers lead, which should be one).

Subscribers run on the emitting greenlet; this one only increments numbers.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import zope.event
from zope.interface import implementer

from greenworks import _checks, _component, events
from greenworks.exceptions import DeadlineExceeded, invalid_argument
from greenworks.interfaces import IMetrics

__all__ = ["CONTENT_TYPE", "Metrics", "current", "exposition", "install", "mark_process_dead"]

#: The Prometheus text format's content type (prometheus_client's, when installed).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds between two reads of the registered components' stats in multiprocess mode.
DEFAULT_REFRESH = 1.0

JOB_DURATION_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
JOB_LATENESS_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)

logger = logging.getLogger(__name__)

_MULTIPROC_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
_current: Metrics | None = None


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(
            "greenworks.metrics needs prometheus_client: pip install 'greenworks[prometheus]' (%s)" % exc
        ) from exc
    return prometheus_client


def _multiproc_dir() -> str | None:
    for key in _MULTIPROC_ENV:
        if os.environ.get(key):
            return os.environ[key]
    return None


def current() -> Metrics | None:
    """Return the installed `Metrics` of this process, or None."""
    return _current


def install(
    registry: Any = None, *, multiprocess: bool | None = None, refresh: float = DEFAULT_REFRESH
) -> Metrics:
    """Subscribe to the greenworks events and export them; return the handle.

    Idempotent: while installed, calling it again with the same arguments
    returns the same handle. Never blocks.

    :param registry: the ``prometheus_client.CollectorRegistry`` to register
        the metrics in (``None``: prometheus_client's default ``REGISTRY``).
        In multiprocess mode the metrics live in files and are registered
        nowhere; *registry* is refused there.
    :param bool multiprocess: prometheus_client's multiprocess mode (``None``:
        on when ``PROMETHEUS_MULTIPROC_DIR`` is set).
    :param float refresh: seconds (> 0) between reads of registered components'
        stats in multiprocess mode.
    :raises ImportError: prometheus_client is not installed (says how to install it).
    :raises InvalidArgument: *multiprocess* disagrees with the environment, a
        *registry* in multiprocess mode, a bad *refresh*, or different
        arguments while installed.
    """
    global _current
    prometheus = _prometheus()
    refresh = _checks.seconds("refresh", refresh, positive=True)
    directory = _multiproc_dir()
    if multiprocess is None:
        multiprocess = directory is not None
    elif not isinstance(multiprocess, bool):
        raise invalid_argument("multiprocess", multiprocess, "True, False or None")
    if multiprocess and directory is None:
        raise invalid_argument(
            "multiprocess", multiprocess, "False unless PROMETHEUS_MULTIPROC_DIR is set (before importing)"
        )
    if not multiprocess and directory is not None:
        raise invalid_argument(
            "multiprocess", multiprocess, "True or None: PROMETHEUS_MULTIPROC_DIR is set, values go to files"
        )
    if multiprocess and registry is not None:
        raise invalid_argument("registry", registry, "None in multiprocess mode (scrapes read the files)")
    if not multiprocess and registry is None:
        registry = prometheus.REGISTRY
    if _current is not None:
        if _current.registry is registry and _current.multiprocess == multiprocess:
            return _current
        raise invalid_argument("registry", registry, "that of the installed metrics (uninstall() first)")
    _current = Metrics(prometheus, registry, multiprocess, refresh)
    return _current


def mark_process_dead(pid: int) -> None:
    """Drop the live gauges of the dead process *pid* (multiprocess mode; else nothing).

    For gunicorn's ``child_exit`` hook, in the master. Never raises for a
    missing prometheus_client or directory.
    """
    if _multiproc_dir() is None:
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # prometheus_client.multiprocess has no annotations


def exposition() -> tuple[bytes, str]:
    """Return ``(body, content_type)`` of a scrape, for ``/metrics``.

    The installed metrics' registry; in multiprocess mode, every worker's
    files; with nothing installed, prometheus_client's default registry.

    :raises ImportError: prometheus_client is not installed.
    """
    prometheus = _prometheus()
    if _multiproc_dir() is not None:
        from prometheus_client import multiprocess

        registry = prometheus.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client.multiprocess has no annotations
    else:
        registry = _current.registry if _current is not None else prometheus.REGISTRY
    return prometheus.generate_latest(registry), prometheus.CONTENT_TYPE_LATEST


def _outcome_of(error: Any) -> str:
    if error is None:
        return "ok"
    return "timed_out" if isinstance(error, DeadlineExceeded) else "error"


class _Refresher:
    """A collector that yields nothing: collecting it refreshes the gauges (one process)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> list[Any]:
        self.metrics.refresh()
        return []


@implementer(IMetrics)
class Metrics:
    """Default implementation of `IMetrics`; made by :func:`install`."""

    def __init__(self, prometheus: Any, registry: Any, multiprocess: bool, refresh: float) -> None:
        self.registry = registry
        self.multiprocess = multiprocess
        self._refresh_every = refresh
        self._components: list[Any] = []
        self._ok_seen: dict[int, int] = {}
        self._led: set[str] = set()
        self._refresher: Any = None
        self._greenlet: Any = None
        target = None if multiprocess else registry
        if not multiprocess:
            # Registered first, so a scrape refreshes the gauges before it reads them.
            self._refresher = _Refresher(self)
            registry.register(self._refresher)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("name",)) -> Any:
            return prometheus.Gauge(name, doc, labels, registry=target, multiprocess_mode="livesum")

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Any:
            return prometheus.Counter(name, doc, labels, registry=target)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Any:
            return prometheus.Histogram(name, doc, ("name", "job"), registry=target, buckets=buckets)

        self.workers = gauge("greenworks_workers", "Worker greenlets alive.")
        self.busy = gauge("greenworks_busy_workers", "Workers running a task or job.")
        self.buffered = gauge("greenworks_buffered_tasks", "Tasks (JobRunner: batches) waiting.")
        self.leader = gauge("greenworks_leader", "1 while this process holds the JobRunner's leader lock.")
        self.tasks = counter("greenworks_tasks", "Dispatcher tasks by outcome.", ("name", "outcome"))
        self.scaled = counter("greenworks_pool_scaled", "Dispatcher pool resizes.", ("name", "reason"))
        self.exits = counter("greenworks_worker_exits", "Runner workers that ended.", ("name", "outcome"))
        self.job_runs = counter(
            "greenworks_job_runs", "JobRunner runs by outcome.", ("name", "job", "outcome")
        )
        self.job_skips = counter("greenworks_job_skips", "Due jobs not run.", ("name", "job", "reason"))
        self.job_duration = histogram(
            "greenworks_job_duration_seconds", "Seconds a job ran.", JOB_DURATION_BUCKETS
        )
        self.job_lateness = histogram(
            "greenworks_job_lateness_seconds",
            "Seconds between a job's due time and its start.",
            JOB_LATENESS_BUCKETS,
        )
        self.ticks_missed = counter(
            "greenworks_ticks_missed", "Tick boundaries a JobRunner missed.", ("name",)
        )
        self.restarts = counter("greenworks_task_restarts", "TaskManager restarts.", ("name", "task"))
        self.give_ups = counter("greenworks_task_give_ups", "TaskManager tasks given up.", ("name", "task"))
        self.hub_blocks = counter(
            "greenworks_hub_blocks", "Hub blocks seen by greenworks.monitor.", ("component",)
        )
        self.hub_blocked = counter(
            "greenworks_hub_blocked_seconds", "Seconds the hub was blocked, by culprit.", ("component",)
        )
        self._collectors = [
            self.workers, self.busy, self.buffered, self.leader, self.tasks, self.scaled, self.exits,
            self.job_runs, self.job_skips, self.job_duration, self.job_lateness, self.ticks_missed,
            self.restarts, self.give_ups, self.hub_blocks, self.hub_blocked,
        ]  # fmt: skip
        self._handlers = {
            events.TaskFailed: lambda e: self.tasks.labels(e.name, "failed").inc(),
            events.TaskTimedOut: lambda e: self.tasks.labels(e.name, "timed_out").inc(),
            events.TaskRejected: lambda e: self.tasks.labels(e.name, "rejected").inc(),
            events.PoolScaled: self._on_scaled,
            events.WorkerExited: lambda e: self.exits.labels(e.name, _outcome_of(e.error)).inc(),
            events.JobFinished: self._on_job_finished,
            events.JobSkipped: lambda e: self.job_skips.labels(e.name, e.job_id, e.reason).inc(),
            events.TicksMissed: lambda e: self.ticks_missed.labels(e.name).inc(e.count),
            events.TaskRestarted: lambda e: self.restarts.labels(e.name, e.task_name).inc(),
            events.TaskGaveUp: lambda e: self.give_ups.labels(e.name, e.task_name).inc(),
            events.LeadershipAcquired: self._on_leader,
            events.LeadershipLost: self._on_not_leader,
            events.ComponentStopped: self._on_stopped,
            events.HubBlocked: self._on_hub_blocked,
        }
        zope.event.subscribers.append(self._on_event)
        if multiprocess:
            self._greenlet = _component.Lifecycle(self, "metrics", "metrics", None, None, __name__).spawn(
                "greenworks.metrics[refresh]", self._refresh_loop
            )

    @property
    def installed(self) -> bool:
        return self._on_event in zope.event.subscribers

    # -- events --------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _on_scaled(self, event: Any) -> None:
        self.scaled.labels(event.name, event.reason).inc()
        self.workers.labels(event.name).set(event.after)

    def _on_job_finished(self, event: Any) -> None:
        self.job_runs.labels(event.name, event.job_id, _outcome_of(event.error)).inc()
        if event.duration is not None:
            self.job_duration.labels(event.name, event.job_id).observe(max(0.0, event.duration))
        if event.lateness is not None:
            self.job_lateness.labels(event.name, event.job_id).observe(max(0.0, event.lateness))

    def _on_leader(self, event: Any) -> None:
        self._led.add(event.name)
        self.leader.labels(event.name).set(1)

    def _on_not_leader(self, event: Any) -> None:
        self.leader.labels(event.name).set(0)

    def _on_stopped(self, event: Any) -> None:
        # A stopped JobRunner leads nothing; only the gauges of those that led exist.
        if event.name in self._led:
            self.leader.labels(event.name).set(0)

    def _on_hub_blocked(self, event: Any) -> None:
        label = event.component_name if event.component_name is not None else "(foreign)"
        self.hub_blocks.labels(label).inc()
        self.hub_blocked.labels(label).inc(max(0.0, event.seconds))

    # -- components read at scrape time ---------------------------------------------------

    def register(self, *components: Any) -> Metrics:
        """Default implementation of `IMetrics.register`."""
        for index, component in enumerate(components):
            if not callable(getattr(component, "stats", None)) and not callable(
                getattr(component, "snapshot", None)
            ):
                raise invalid_argument("components[%d]" % index, component, "a component with stats()")
            if component not in self._components:
                self._components.append(component)
        self.refresh()
        return self

    def refresh(self) -> None:
        """Read the registered components' stats into the gauges and the ``ok`` counters. Never blocks."""
        for component in list(self._components):
            try:
                self._refresh_one(component)
            except Exception:
                logger.exception("metrics: stats() of %r failed", component)

    def _refresh_one(self, component: Any) -> None:
        stats = component.stats() if callable(getattr(component, "stats", None)) else component.snapshot()
        name = str(getattr(component, "name", None) or type(component).__name__.lower())
        if not isinstance(stats, dict):
            # An older JobRunner's Stats object.
            stats = {key: getattr(stats, key, None) for key in ("in_flight_jobs", "batch_queue_depth")}
        if "in_flight_jobs" in stats:
            # A JobRunner: jobs in flight are its busy workers, queued batches its buffer.
            stats = {"busy": stats.get("in_flight_jobs"), "buffered": stats.get("batch_queue_depth")}
        for key, gauge in (("workers", self.workers), ("busy", self.busy), ("buffered", self.buffered)):
            value = stats.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                gauge.labels(name).set(value)
        executed = stats.get("executed")
        if isinstance(executed, int):
            ok = executed - int(stats.get("failed") or 0) - int(stats.get("timed_out") or 0)
            seen = self._ok_seen.get(id(component), 0)
            if ok > seen:
                self.tasks.labels(name, "ok").inc(ok - seen)
            self._ok_seen[id(component)] = max(ok, seen)

    def _refresh_loop(self) -> None:
        import gevent

        while True:
            gevent.sleep(self._refresh_every)
            self.refresh()

    def uninstall(self) -> None:
        """Default implementation of `IMetrics.uninstall`."""
        global _current
        if self._on_event in zope.event.subscribers:
            zope.event.subscribers.remove(self._on_event)
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=5)
            self._greenlet = None
        if not self.multiprocess:
            for collector in [self._refresher, *self._collectors]:
                try:
                    self.registry.unregister(collector)
                except KeyError:
                    pass
            self._collectors = []
        if _current is self:
            _current = None

    def __repr__(self) -> str:
        return "<greenworks.metrics.Metrics %s%s>" % (
            "multiprocess" if self.multiprocess else "registry",
            "" if self.installed else " uninstalled",
        )
