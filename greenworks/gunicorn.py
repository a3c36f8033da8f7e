"""
Hook helpers for gunicorn's gevent worker (``gunicorn -k gevent``).

A gunicorn app built on greenworks has two kinds of work in each worker
process: the requests gunicorn serves, and what greenworks runs beside them
(a `JobRunner`, a `Runner`, a singleton worker). This module starts the
latter when a worker boots and drains it when the worker goes away, within
gunicorn's own ``graceful_timeout``.

In the app module (imported by every worker, or once by the master with
``--preload``), register what to run::

    from greenworks.coordination import FileLock
    from greenworks.gunicorn import runtime
    from greenworks.jobs import JobRunner, job

    def start_jobs():
        runner = JobRunner(tick=60, leader=FileLock("/run/myapp/jobs.lock"))
        runner.set_jobs([job("report", send_report)])
        return runner                    # any IComponent: started, then stop(timeout)

    runtime.add(start_jobs, name="jobs")

and paste four lines into ``gunicorn.conf.py`` (after ``import greenworks.gunicorn``)::

    post_worker_init = greenworks.gunicorn.post_worker_init
    worker_int = greenworks.gunicorn.worker_int
    worker_exit = greenworks.gunicorn.worker_exit
    child_exit = greenworks.gunicorn.child_exit

Why these hooks (see gunicorn's ``arbiter.py`` and ``workers/ggevent.py``):

- ``post_worker_init(worker)`` runs in the worker after the gevent worker
  monkey-patched the process, re-initialised the hub and loaded the app, just
  before it starts serving. ``post_fork`` would be too early: it runs before
  all of that, and without ``--preload`` the app (and so the registrations)
  is not even imported yet.
- A worker stops accepting work when ``worker.alive`` turns False: on
  SIGTERM (graceful stop, HUP reload, TTOU), on reaching ``max_requests``,
  or on a ``--reload`` change. None of these calls a hook, so a small
  watcher greenlet polls ``worker.alive`` (every *poll* seconds) and begins
  stopping the runtime, while gunicorn drains its requests.
- ``child_exit(server, worker)`` runs in the master as soon as it reaped a
  worker, however it died: it releases the Redis leases the dead worker held
  (`greenworks.coordination.release_dead`, which never touches a live
  holder's), so another worker takes leadership over at its next tick
  instead of after the lease's ttl, and drops the dead worker's live gauges
  in prometheus_client's multiprocess mode (`greenworks.metrics.mark_process_dead`).
- ``worker_int(worker)`` (SIGINT/SIGQUIT: quick shutdown) and
  ``worker_exit(server, worker)`` (the last thing a worker does) then wait
  for that stop to finish, within what is left of ``graceful_timeout``
  (counted from when stopping began, less a safety margin, because the
  arbiter SIGKILLs the worker once it is over), and kill what is still
  running. ``worker_exit`` also runs in the master for a worker that is
  already gone; there it does nothing.

A worker killed with SIGKILL, or aborted after "WORKER TIMEOUT" (SIGABRT:
its ``worker_abort`` hook runs in a signal handler of a stuck hub, so none
is offered here), gets no chance to drain: that is what ``child_exit`` and
the leases of `greenworks.coordination` are for (the kernel frees a
`FileLock` at once; a `RedisLock` of a dead worker is taken over by the
next worker's ``acquire``, at its next tick, or released by ``child_exit``,
whichever comes first, and otherwise expires within its ttl), and the fenced
per-tick claims keep a job from running twice.
"""

import logging
import os
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event

from greenworks import _checks, _greenlets
from greenworks._component import State
from greenworks.clock import get_clock
from greenworks.context import Context, with_cancel
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IComponent

__all__ = ["Runtime", "child_exit", "post_worker_init", "runtime", "worker_exit", "worker_int"]

logger = logging.getLogger(__name__)

# What a value that is not an IComponent may be stopped with, in this order.
_PLAIN_STOP_METHODS = ("stop_and_wait", "stop", "close")


def _plain_stop_method(value: Any) -> Callable[[], Any] | None:
    for method in _PLAIN_STOP_METHODS:
        fn = getattr(value, method, None)
        if callable(fn):
            found: Callable[[], Any] = fn
            return found
    return None


class _Component:
    __slots__ = ("name", "start", "stop", "value", "started")

    def __init__(self, name: str, start: Callable[[], Any], stop: Callable[[Any], Any] | None) -> None:
        self.name = name
        self.start = start
        self.stop = stop
        self.value: Any = None
        self.started = False


class Runtime:
    """What one worker process runs beside serving requests, started and drained as a unit.

    States: *idle* -> :meth:`start` -> *running* -> :meth:`begin_stop` ->
    *stopping* -> (everything stopped, or :meth:`stop`'s timeout killed the
    rest) -> *stopped*. A runtime starts at most once per process; the
    registrations (:meth:`add`, :meth:`add_worker`) are kept, so a runtime
    registered in a ``--preload``-ed master starts afresh in every worker.

    Components are started in registration order and stopped in reverse
    order, one after the other, in a greenlet named
    ``greenworks.gunicorn.stop``; workers added with :meth:`add_worker` run
    each in a greenlet ``greenworks.gunicorn.worker[<name>]`` with
    :attr:`ctx`, which is cancelled when stopping begins.

    :param float poll: seconds between looks at ``worker.alive`` (gunicorn
        itself looks once a second).
    :param float margin: seconds kept back from ``graceful_timeout`` so the
        kill happens before the arbiter's SIGKILL.
    """

    def __init__(
        self,
        *,
        poll: float = 0.25,
        margin: float = 1.0,
        clock: Any = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._poll = _checks.seconds("poll", poll, positive=True)
        self._margin = _checks.seconds("margin", margin)
        self._clock = get_clock(clock)
        self._logger = logger or logging.getLogger(__name__)
        self._components: list[_Component] = []
        self._workers: list[tuple[str, Any]] = []  # (name, IWorker)
        self._reset()

    def _reset(self) -> None:
        self._pid: int | None = None
        self._ctx: Context | None = None
        self._greenlets: list[Any] = []
        self._stopper: Any = None
        self._watcher: Any = None
        self._stop_started: float | None = None
        # Monotonic time by which the components must have stopped (None: no limit known).
        self._deadline: float | None = None
        self._graceful: float | None = None
        self._stopping = Event()
        self._stopped = Event()

    # -- registering ---------------------------------------------------------

    def add(
        self,
        start: Callable[[], Any],
        stop: Callable[[Any], Any] | None = None,
        *,
        name: str | None = None,
    ) -> Callable[[], Any]:
        """Register a component: ``start()`` builds it, the runtime starts and stops it.

        *start* runs in :meth:`start` (``post_worker_init``). When it returns
        an `IComponent` (a `Runner`, `Dispatcher`, `TaskManager`,
        `JobRunner`, ...), started or not, the runtime calls its ``start()``
        and, when the worker goes away, its ``stop(timeout)`` with what is
        left of gunicorn's ``graceful_timeout``. For anything else pass
        *stop*, ``stop(value)``, which should block until it drained (a
        value with ``stop_and_wait()``, ``stop()`` or ``close()`` is stopped
        with the first of these it has). Usable as a decorator.

        :return: *start*.
        :raises InvalidArgument: *start* or *stop* is not callable.
        """
        if not callable(start):
            raise invalid_argument("start", start, "a callable returning the component")
        if stop is not None and not callable(stop):
            raise invalid_argument("stop", stop, "None or a callable taking the component")
        name = name or getattr(start, "__name__", None) or repr(start)
        self._components.append(_Component(name, start, stop))
        return start

    def add_worker(self, worker: Any, *, name: str | None = None) -> Any:
        """Register an `IWorker` to run with :attr:`ctx` in its own greenlet.

        Wrap it with `greenworks.coordination.singleton` to run it on one
        worker process of the whole cluster.

        :raises InvalidArgument: *worker* has no ``run(ctx)``.
        """
        if not callable(getattr(worker, "run", None)):
            raise invalid_argument("worker", worker, "an IWorker (an object with run(ctx))")
        self._workers.append((name or type(worker).__name__, worker))
        return worker

    # -- reading -------------------------------------------------------------

    @property
    def ctx(self) -> Context | None:
        """The `IContext` of this process's run (None before :meth:`start`); cancelled on stop."""
        return self._ctx if self._pid == os.getpid() else None

    @property
    def running(self) -> bool:
        """Whether this process started the runtime and it is not stopping."""
        return self._pid == os.getpid() and not self._stopping.is_set()

    def components(self) -> dict[str, Any]:
        """Return ``{name: component}`` for the started components of this process."""
        if self._pid != os.getpid():
            return {}
        return {c.name: c.value for c in self._components if c.started}

    @property
    def name(self) -> str:
        return "gunicorn"

    @property
    def state(self) -> State:
        """The runtime's lifecycle as a `greenworks.State` (in this process)."""
        if self._pid != os.getpid():
            return State.NEW
        if self._stopped.is_set():
            return State.STOPPED
        if self._stopping.is_set():
            return State.STOPPING
        return State.RUNNING

    def status(self) -> dict[str, Any]:
        """Deprecated name of :meth:`snapshot`."""
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready dict: pid, state, and each component's ``snapshot()`` where it has one."""
        snapshots: dict[str, Any] = {}
        for name, value in self.components().items():
            snapshot = getattr(value, "snapshot", None)
            if callable(snapshot):
                try:
                    snapshots[name] = snapshot()
                except Exception:
                    self._logger.exception("runtime: snapshot() of %r failed", name)
                    snapshots[name] = None
            else:
                snapshots[name] = repr(value)
        state = "idle"
        if self._pid == os.getpid():
            state = "running"
            if self._stopped.is_set():
                state = "stopped"
            elif self._stopping.is_set():
                state = "stopping"
        return {"pid": os.getpid(), "state": state, "components": snapshots}

    # -- running -------------------------------------------------------------

    def start(self) -> None:
        """Start every component, then every worker; idempotent within a process.

        Blocks while the ``start`` callables run. If one raises, the ones
        already started are stopped and the error propagates (a worker that
        cannot start its runtime should not serve).
        """
        if self._pid == os.getpid():
            return
        # A runtime inherited over fork starts afresh: the parent's greenlets
        # and components are not this process's.
        for component in self._components:
            component.started = False
            component.value = None
        self._reset()
        self._pid = os.getpid()
        self._ctx = with_cancel(clock=self._clock)
        for component in self._components:
            try:
                component.value = value = component.start()
                if IComponent.providedBy(value):
                    value.start()
                elif component.stop is None and _plain_stop_method(value) is None:
                    raise invalid_argument(
                        "stop",
                        None,
                        "a callable for %r, whose start() returned %r: not an IComponent, and without %s()"
                        % (component.name, value, "(), ".join(_PLAIN_STOP_METHODS)),
                    )
            except Exception:
                self._logger.error("runtime: starting %r failed; stopping the rest", component.name)
                self.stop(timeout=None)
                raise
            component.started = True
        for name, worker in self._workers:
            self._greenlets.append(
                _greenlets.spawn("greenworks.gunicorn.worker[%s]" % name, self._run_worker, name, worker)
            )
        self._logger.info(
            "runtime started in pid %d: %d component(s), %d worker(s)",
            self._pid,
            len(self._components),
            len(self._workers),
        )

    def _run_worker(self, name: str, worker: Any) -> None:
        assert self._ctx is not None  # start() made it before spawning the workers
        try:
            worker.run(self._ctx)
        except Exception:
            self._logger.exception("runtime: worker %r failed", name)
            return
        if not self._ctx.done.is_set():
            self._logger.warning("runtime: worker %r returned before the runtime stopped", name)

    def begin_stop(self) -> None:
        """Cancel :attr:`ctx` and start stopping the components, without waiting. Idempotent."""
        if self._pid != os.getpid() or self._stopping.is_set():
            return
        self._stop_started = self._clock.monotonic()
        if self._graceful is not None:
            self._deadline = self._stop_started + max(0.0, self._graceful - self._margin)
        self._stopping.set()
        assert self._ctx is not None  # start() made it in this process (checked above)
        self._ctx.cancel()
        self._logger.info("runtime in pid %d: stopping", self._pid)
        self._stopper = _greenlets.spawn("greenworks.gunicorn.stop", self._stop_all)

    def _stop_all(self) -> None:
        for component in reversed(self._components):
            if not component.started:
                continue
            try:
                self._stop_component(component)
            except Exception:
                self._logger.exception("runtime: stopping %r failed", component.name)
            component.started = False
        gevent.joinall(self._greenlets)

    def _stop_component(self, component: _Component) -> None:
        value = component.value
        if component.stop is not None:
            component.stop(value)
        elif IComponent.providedBy(value):
            budget = None
            if self._deadline is not None:
                budget = max(0.0, self._deadline - self._clock.monotonic())
            if not value.stop(budget):
                self._logger.warning(
                    "runtime: %r did not stop in time; its stragglers were killed", component.name
                )
        else:
            plain = _plain_stop_method(value)
            assert plain is not None  # start() refused a value without stop= and without one
            plain()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop everything and wait up to *timeout*; then kill what is left.

        "What is left" is the stop greenlet (interrupting a component's
        ``stop``) and the workers' greenlets; greenlets a component spawned
        itself are that component's business. Idempotent; concurrent calls
        all wait for the same stop.

        :return bool: True if everything stopped within *timeout*.
        """
        timeout = _checks.seconds("timeout", timeout, none=True)
        if self._pid != os.getpid():
            return True
        if timeout is not None:
            deadline = self._clock.monotonic() + timeout
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
        self.begin_stop()
        if self._stopped.is_set():
            return True
        done = bool(self._clock.wait(_dead_event(self._stopper), timeout))
        if not done:
            left = [g for g in [self._stopper, *self._greenlets] if not g.dead]
            self._logger.warning(
                "runtime in pid %d: not drained within %.1fs; killing %s",
                self._pid,
                timeout,
                ", ".join(g.name for g in left),
            )
            gevent.killall(left, timeout=1.0)
        if self._watcher is not None and self._watcher is not gevent.getcurrent():
            self._watcher.kill()
        self._stopped.set()
        self._logger.info("runtime in pid %d: stopped", self._pid)
        return done

    def remaining(self, graceful_timeout: float) -> float:
        """Seconds left of *graceful_timeout* since stopping began, less the margin (>= 0)."""
        started = self._stop_started if self._stop_started is not None else self._clock.monotonic()
        return max(0.0, started + graceful_timeout - self._margin - self._clock.monotonic())

    # -- gunicorn hooks ------------------------------------------------------

    def post_worker_init(self, worker: Any) -> None:
        """gunicorn ``post_worker_init`` hook: start, and watch ``worker.alive``."""
        cfg = getattr(worker, "cfg", None)
        graceful = getattr(cfg, "graceful_timeout", None)
        self.start()
        if _checks.is_real(graceful):
            self._graceful = float(graceful)
        self._watcher = _greenlets.spawn("greenworks.gunicorn.watch", self._watch, worker)

    def _watch(self, worker: Any) -> None:
        while not self._clock.wait(self._stopping, self._poll):
            if not getattr(worker, "alive", True):
                self.begin_stop()
                return

    def worker_int(self, worker: Any) -> None:
        """gunicorn ``worker_int`` hook (SIGINT/SIGQUIT): stop within the remaining graceful_timeout."""
        self._drain(worker)

    def worker_exit(self, server: Any, worker: Any) -> None:
        """gunicorn ``worker_exit`` hook: stop within the remaining graceful_timeout.

        A no-op in a process where the runtime was not started (the master).
        """
        self._drain(worker)

    def _drain(self, worker: Any) -> None:
        if self._pid != os.getpid() or self._stopped.is_set():
            return
        self.begin_stop()
        cfg = getattr(worker, "cfg", None)
        graceful = float(getattr(cfg, "graceful_timeout", 30))
        self.stop(timeout=self.remaining(graceful))

    def __repr__(self) -> str:
        return "<greenworks.gunicorn.Runtime %s components=%d workers=%d>" % (
            self.snapshot()["state"],
            len(self._components),
            len(self._workers),
        )


def _dead_event(greenlet: Any) -> Event:
    event = Event()
    if greenlet.dead:
        event.set()
    else:
        greenlet.rawlink(lambda _g: event.set())
    return event


#: The process-wide runtime the module-level hooks drive.
runtime = Runtime()


def post_worker_init(worker: Any) -> None:
    """``post_worker_init = greenworks.gunicorn.post_worker_init`` in gunicorn.conf.py."""
    runtime.post_worker_init(worker)


def worker_int(worker: Any) -> None:
    """``worker_int = greenworks.gunicorn.worker_int`` in gunicorn.conf.py."""
    runtime.worker_int(worker)


def worker_exit(server: Any, worker: Any) -> None:
    """``worker_exit = greenworks.gunicorn.worker_exit`` in gunicorn.conf.py."""
    runtime.worker_exit(server, worker)


def child_exit(server: Any, worker: Any) -> None:
    """``child_exit = greenworks.gunicorn.child_exit`` in gunicorn.conf.py (runs in the master).

    Releases the Redis leases the dead worker held, at once and never a live
    holder's, and drops its live gauges in prometheus_client's multiprocess
    mode. Never raises; blocks the master for at most about a second per
    Redis server (the master is not monkey-patched).
    """
    from greenworks.coordination import release_dead

    pid = getattr(worker, "pid", None)
    if not _checks.is_int(pid):
        return
    try:
        release_dead(pid)
    except Exception:
        logger.exception("child_exit: releasing the leases of worker %s failed", pid)
    try:
        from greenworks.metrics import mark_process_dead

        mark_process_dead(pid)
    except Exception:
        logger.exception("child_exit: marking worker %s dead for the metrics failed", pid)
