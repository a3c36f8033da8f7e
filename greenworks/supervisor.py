"""
Supervisor trees (Erlang/OTP) and task groups for greenlets.

A :class:`Supervisor` runs its children, each in a greenlet of its own, and
restarts them by a strategy when they end::

    tree = Supervisor(
        [
            Child(fetch_loop, "permanent"),
            Supervisor([parse_loop, store_loop], "rest_for_one", name="pipeline"),
            Child(send_report, "transient"),
        ],
        strategy="one_for_one", max_restarts=3, period=5.0,
    )
    with tree:                      # start(); stop() on the way out
        serve_forever()

OTP's rules, in greenlet terms:

- A child is an `IWorker` (``run(ctx)``), a plain ``f(ctx)`` callable,
  another Supervisor (a subtree) or a :class:`Child` wrapping one of those
  with its restart type, name and shutdown time. Each runs with a context
  of its own, which the supervisor cancels when the child should stop (the
  end of the supervisor's context reaches the children that way, one at a
  time, in reverse order).
- Restart types: ``permanent`` children are restarted whenever they end,
  ``transient`` ones only after an error (not after returning, nor after a
  ``GreenletExit`` from outside), ``temporary`` ones never.
- Strategies, applied when a child ends and is to be restarted:
  ``one_for_one`` restarts that child; ``one_for_all`` stops all the others
  and restarts all; ``rest_for_one`` stops and restarts the children started
  after it, and it. A ``temporary`` child stopped that way is not restarted;
  a child that is not to be restarted never affects its siblings.
- Children start in order and stop in reverse order, one at a time: each
  gets its context cancelled, then ``shutdown`` seconds (default 5; a child
  supervisor: as long as it needs) before it is killed.
- Restart intensity: more than ``max_restarts`` restarts within ``period``
  seconds and the supervisor stops its children and fails with
  `RestartIntensityExceeded`. A child supervisor's failure is a child
  failure to its parent (whose strategy and intensity apply); the root logs
  one ERROR, shows it in ``snapshot()`` and raises it from ``wait()``.
- ``backoff`` (an `IBackoff`) delays each restart: attempt *n* waits
  ``backoff.duration(n)``, where *n* counts a child's restarts in a row
  less than ``period`` apart. Stopping during the wait stops at once.

A supervisor is an `IComponent` when it is the root (``start()``/``stop()``
/``with``) and an `IWorker` under a parent (``run(ctx)``, which is what the
parent calls); the stop of a child supervisor is its parent's business.
Time (period, backoff, shutdown) is measured on ``clock``.

:func:`task_group` (see `greenworks._task_group`) is the other shape of
structured concurrency: a ``with`` block that owns its greenlets.
"""

import collections
import logging
from collections.abc import Iterable
from typing import Any

from gevent import Greenlet, GreenletExit
from gevent.event import Event
from zope.interface import implementer

from greenworks import _checks
from greenworks._component import Lifecycle, State, iso
from greenworks._task_group import DEFAULT_GRACE, TaskGroup, TaskStatus, task_group
from greenworks.clock import ClockLike
from greenworks.context import with_cancel
from greenworks.exceptions import ContextError, RestartIntensityExceeded, SupervisorError, invalid_argument
from greenworks.interfaces import IBackoff, IChild, ISupervisor

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_SHUTDOWN",
    "RESTART_TYPES",
    "STRATEGIES",
    "Child",
    "Supervisor",
    "TaskGroup",
    "TaskStatus",
    "task_group",
]

logger = logging.getLogger(__name__)

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTART_TYPES = ("permanent", "transient", "temporary")
#: Seconds a worker child gets to end after its context is cancelled, before it is killed.
DEFAULT_SHUTDOWN = 5.0
_DEFAULT: Any = object()


def _describe(spec: Any) -> str:
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name.strip():
        return name
    return getattr(spec, "__name__", None) or type(spec).__name__


@implementer(IChild)
class Child:
    """Default implementation of `IChild`.

    :param spec: an `IWorker`, a callable ``f(ctx)`` or a `Supervisor`.
    :param str restart: ``"permanent"``, ``"transient"`` or ``"temporary"``.
    :keyword str name: defaults to the spec's ``name`` or ``__name__``.
    :keyword shutdown: seconds between cancelling and killing it (``None``:
        wait; default 5.0 for a worker, ``None`` for a supervisor).
    :raises InvalidArgument: for a bad argument, naming it.
    """

    __slots__ = ("name", "restart", "shutdown", "spec")

    def __init__(
        self, spec: Any, restart: str = "permanent", *, name: Any = None, shutdown: Any = _DEFAULT
    ) -> None:
        if isinstance(spec, Child):
            raise invalid_argument("spec", spec, "an IWorker, a callable f(ctx) or a Supervisor, not a Child")
        if not callable(getattr(spec, "run", None)) and not callable(spec):
            raise invalid_argument("spec", spec, "an IWorker, a callable f(ctx) or a Supervisor")
        if restart not in RESTART_TYPES:
            raise invalid_argument("restart", restart, 'one of "permanent", "transient", "temporary"')
        self.spec = spec
        self.restart = restart
        self.name = _checks.name("name", _describe(spec) if name is None else name)
        if shutdown is _DEFAULT:
            shutdown = None if isinstance(spec, Supervisor) else DEFAULT_SHUTDOWN
        self.shutdown = _checks.seconds("shutdown", shutdown, none=True)

    def __repr__(self) -> str:
        return "<greenworks.Child %r %s>" % (self.name, self.restart)


class _Running:
    """A child during one run of its supervisor."""

    __slots__ = (
        "attempt",
        "child",
        "ctx",
        "generation",
        "greenlet",
        "last_error",
        "last_restart",
        "outcome",
        "restarts",
        "started_at",
        "starts",
        "status",
        "stopping",
    )

    def __init__(self, child: Child) -> None:
        self.child = child
        self.ctx: Any = None
        self.greenlet: Greenlet | None = None
        self.generation = 0
        self.status = "new"
        self.stopping = False
        self.outcome: tuple[str, BaseException | None] = ("killed", None)
        self.starts = 0
        self.restarts = 0
        self.attempt = 0
        self.last_restart: float | None = None
        self.last_error: str | None = None
        self.started_at: float | None = None


@implementer(ISupervisor)
class Supervisor:
    """Default implementation of `ISupervisor`.

    :param children: an iterable of `IWorker`, ``f(ctx)``, `Supervisor` or `Child`.
    :param str strategy: ``"one_for_one"``, ``"one_for_all"`` or ``"rest_for_one"``.
    :param int max_restarts: restarts allowed within *period* (OTP's intensity; 0: none).
    :param float period: seconds (> 0).
    :param backoff: an `IBackoff` delaying restarts, or None (restart at once).
    :keyword str name: names its greenlets (``greenworks.<name>[<child>]``), logs and snapshot.
    :keyword clock: the `IClock` of period, backoff and shutdown.
    :keyword logger: a ``logging.Logger`` (default ``greenworks.supervisor``).
    :raises InvalidArgument: for a bad argument, naming it; duplicate child
        names; a supervisor already placed under another parent.
    """

    def __init__(
        self,
        children: Iterable[Any],
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        period: float = 5.0,
        backoff: Any = None,
        *,
        name: str = "supervisor",
        clock: ClockLike | None = None,
        logger: Any = None,
    ) -> None:
        self._life = Lifecycle(self, "supervisor", name, clock, logger, __name__)
        if strategy not in STRATEGIES:
            raise invalid_argument(
                "strategy", strategy, 'one of "one_for_one", "one_for_all", "rest_for_one"'
            )
        self._strategy = strategy
        self._max_restarts = _checks.count("max_restarts", max_restarts)
        self._period = _checks.seconds("period", period, positive=True)
        if backoff is not None and not IBackoff.providedBy(backoff):
            raise invalid_argument("backoff", backoff, "an IBackoff (greenworks.backoff) or None")
        self._backoff = backoff
        if isinstance(children, (str, bytes)) or not isinstance(children, Iterable):
            raise invalid_argument("children", children, "an iterable of children")
        specs = [c if isinstance(c, Child) else Child(c) for c in children]
        seen: set[str] = set()
        for child in specs:
            if child.name in seen:
                raise invalid_argument("children", child.name, "children with unique names (a duplicate)")
            seen.add(child.name)
            sub = child.spec
            if isinstance(sub, Supervisor) and (sub is self or sub._parent is not None):
                raise invalid_argument("children", sub, "a supervisor under no other parent")
        for child in specs:
            if isinstance(child.spec, Supervisor):
                child.spec._parent = self
        self._children = specs
        self._parent: Supervisor | None = None
        # True while run() was called by someone else (a parent): stop() is theirs then.
        self._run_by_caller = False
        self._running: list[_Running] = []
        self._restarts: collections.deque[float] = collections.deque()
        self._events: collections.deque[tuple[_Running, int]] = collections.deque()
        self._wake = Event()
        self._error: BaseException | None = None
        self._clean = True
        self._root_ctx: Any = None
        self._main: Greenlet | None = None

    # -- reading ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._life.name

    @property
    def state(self) -> State:
        return self._life.state

    @property
    def strategy(self) -> str:
        return self._strategy

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def children(self) -> list[Child]:
        """The child specs, in start order (a copy)."""
        return list(self._children)

    # -- as a root -------------------------------------------------------------

    def start(self) -> "Supervisor":
        """See `IComponent.start`: run the tree in a greenlet ``greenworks.<name>``. Never blocks.

        :raises SupervisorError: it runs under a parent.
        """
        if self._run_by_caller:
            raise SupervisorError("supervisor %r runs under a parent; start the parent" % self.name)
        if self._life.state is State.RUNNING or self._life.state is State.STOPPING:
            return self
        self._root_ctx = with_cancel(None, self._life.clock)
        self._life.started()
        self._main = self._life.spawn("greenworks.%s" % self.name, self._root_main, self._root_ctx)
        return self

    def _root_main(self, ctx: Any) -> None:
        try:
            self._run(ctx)
        except RestartIntensityExceeded as exc:
            self._life.logger.error("%s; its children are stopped", exc, exc_info=exc.__cause__)
        except Exception:
            self._life.logger.exception("supervisor %r: failed", self.name)

    def stop(self, timeout: float | None = None) -> bool:
        """See `IComponent.stop`: stop the children in reverse order, then end.

        *timeout* bounds the whole stop (``None``: each child's ``shutdown`` bounds it).

        :raises SupervisorError: it runs under a parent.
        :raises ReentrantStopError: called from one of its greenlets.
        """
        timeout = _checks.seconds("timeout", timeout, none=True)
        if self._run_by_caller:
            raise SupervisorError("supervisor %r runs under a parent; stop the parent" % self.name)
        self._life.check_not_own("stop")
        if self._main is None:
            return True
        self._root_ctx.cancel()
        in_time = self._life.finish([self._main], timeout, what="supervisor greenlet")
        # A killed main greenlet kills the children it was stopping; anything left goes now.
        in_time = self._life.finish(self._life.alive(), 0.0, what="child") and in_time
        self._life.wait_stopped()
        return in_time and self._clean

    def wait(self, timeout: float | None = None) -> bool:
        """See `ISupervisor.wait`."""
        timeout = _checks.seconds("timeout", timeout, none=True)
        if not self._life.wait_stopped(timeout):
            return False
        if self._error is not None:
            raise self._error
        return True

    def __enter__(self) -> "Supervisor":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- as a child (IWorker) --------------------------------------------------

    def run(self, ctx: Any) -> None:
        """See `IWorker.run`: supervise until *ctx* is done; blocks.

        :raises RestartIntensityExceeded: it gave up (its children are stopped).
        :raises SupervisorError: it is already running.
        """
        if self._life.running or self._life.state is State.STOPPING:
            raise SupervisorError("supervisor %r is already running" % self.name)
        self._run_by_caller = True
        self._life.started()
        try:
            self._run(ctx)
        finally:
            self._run_by_caller = False

    def _run(self, ctx: Any) -> None:
        self._error = None
        self._clean = True
        self._restarts.clear()
        self._events.clear()
        self._running = [_Running(child) for child in self._children]
        wake = self._wake
        ctx.done.rawlink(self._poke)
        try:
            for entry in self._running:
                self._start_child(entry, ctx)
            while True:
                while not self._events and ctx.err is None:
                    wake.clear()
                    wake.wait()
                if ctx.err is not None:
                    return
                entry, generation = self._events.popleft()
                if generation == entry.generation and not entry.stopping and entry in self._running:
                    self._child_ended(entry, ctx)
        except RestartIntensityExceeded as exc:
            self._error = exc
            raise
        finally:
            ctx.done.unlink(self._poke)
            self._life.state = State.STOPPING
            try:
                self._clean = self._stop_all(reversed(self._running)) and self._clean
            except BaseException:
                # Killed while stopping: take every child along, at once.
                self._life.finish(self._life.alive(), 0.0, what="child")
                self._life.stopped(False)
                raise
            self._life.stopped(self._clean)

    def _poke(self, _source: Any = None) -> None:
        self._wake.set()

    # -- children --------------------------------------------------------------

    def _start_child(self, entry: _Running, ctx: Any) -> None:
        entry.generation += 1
        entry.stopping = False
        entry.outcome = ("killed", None)
        # A context of its own, not derived from the supervisor's: the end of
        # that one must reach the children one at a time, in reverse order.
        entry.ctx = with_cancel(None, self._life.clock)
        entry.status = "running"
        entry.starts += 1
        entry.started_at = self._life.clock.time()
        generation = entry.generation
        greenlet = self._life.spawn(
            "greenworks.%s[%s]" % (self.name, entry.child.name), self._child_main, entry, entry.ctx
        )
        greenlet.rawlink(lambda _g: self._post(entry, generation))
        entry.greenlet = greenlet

    def _child_main(self, entry: _Running, ctx: Any) -> None:
        spec = entry.child.spec
        run = getattr(spec, "run", None)
        try:
            if callable(run):
                run(ctx)
            else:
                spec(ctx)
        except GreenletExit:
            entry.outcome = ("killed", None)
        except ContextError as exc:
            entry.outcome = ("normal", None) if ctx.err is not None else ("error", exc)
        except Exception as exc:
            entry.outcome = ("error", exc)
        else:
            entry.outcome = ("normal", None)

    def _post(self, entry: _Running, generation: int) -> None:
        self._events.append((entry, generation))
        self._wake.set()

    def _child_ended(self, entry: _Running, ctx: Any) -> None:
        child = entry.child
        kind, error = entry.outcome
        entry.greenlet = None
        restart = child.restart == "permanent" or (child.restart == "transient" and kind == "error")
        log = self._life.logger
        if kind == "error":
            entry.last_error = "%s: %s" % (type(error).__name__, error)
            log.warning(
                "supervisor %r: child %r failed (%s)",
                self.name,
                child.name,
                "restarting" if restart else child.restart,
                exc_info=error,
            )
        else:
            log.info("supervisor %r: child %r ended (%s)", self.name, child.name, kind)
        entry.status = "failed" if kind == "error" else "exited"
        if not restart:
            if child.restart == "temporary":
                self._running.remove(entry)
            return
        self._count_restart(child.name, error)
        if self._strategy == "one_for_one":
            group = [entry]
        else:
            index = self._running.index(entry)
            group = list(self._running) if self._strategy == "one_for_all" else self._running[index:]
        others = [e for e in group if e is not entry]
        self._clean = self._stop_all(reversed(others)) and self._clean
        for other in others:
            if other.child.restart == "temporary":
                self._running.remove(other)
        group = [e for e in group if e in self._running]
        for member in group:
            member.status = "restarting"
        now = self._life.clock.monotonic()
        if entry.last_restart is not None and now - entry.last_restart < self._period:
            entry.attempt += 1
        else:
            entry.attempt = 1
        entry.last_restart = now
        if self._backoff is not None:
            delay = self._backoff.duration(entry.attempt)
            if delay > 0 and self._life.clock.wait(ctx.done, delay):
                return  # stopped while waiting
        for member in group:
            member.restarts += 1
            self._start_child(member, ctx)

    def _count_restart(self, child_name: str, error: BaseException | None) -> None:
        """Count one restart; raise `RestartIntensityExceeded` when there are too many."""
        now = self._life.clock.monotonic()
        restarts = self._restarts
        restarts.append(now)
        while restarts and restarts[0] <= now - self._period:
            restarts.popleft()
        if len(restarts) > self._max_restarts:
            raise RestartIntensityExceeded(self.name, self._max_restarts, self._period, child_name, error)

    def _stop_all(self, entries: Iterable[_Running]) -> bool:
        """Stop *entries* one at a time, in the order given; True if all ended in time."""
        clean = True
        for entry in entries:
            greenlet = entry.greenlet
            if greenlet is None:
                continue
            entry.stopping = True
            entry.ctx.cancel()
            clean = self._life.finish([greenlet], entry.child.shutdown, what="child") and clean
            entry.greenlet = None
            entry.status = "stopped"
        return clean

    # -- reporting -------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """See `IStatusSource.snapshot`: the header, the settings, and one entry per child (a tree)."""
        snap = self._life.header()
        now = self._life.clock.monotonic()
        snap.update(
            strategy=self._strategy,
            max_restarts=self._max_restarts,
            period=self._period,
            restarts_in_period=sum(1 for t in self._restarts if t > now - self._period),
            error=None if self._error is None else str(self._error),
        )
        running = {entry.child.name: entry for entry in self._running}
        children = []
        for child in self._children:
            entry = running.get(child.name)
            item: dict[str, Any] = {
                "name": child.name,
                "restart": child.restart,
                "kind": "supervisor" if isinstance(child.spec, Supervisor) else "worker",
                "status": "new" if entry is None and not self._running else "removed",
                "starts": 0,
                "restarts": 0,
                "last_error": None,
                "started_at": None,
            }
            if entry is not None:
                item.update(
                    status=entry.status,
                    starts=entry.starts,
                    restarts=entry.restarts,
                    last_error=entry.last_error,
                    started_at=iso(entry.started_at),
                )
            if isinstance(child.spec, Supervisor):
                item["supervisor"] = child.spec.snapshot()
            children.append(item)
        snap["children"] = children
        return snap

    def __repr__(self) -> str:
        return "<greenworks.Supervisor %r %s %s children=%d>" % (
            self.name,
            self._strategy,
            self._life.state.value,
            len(self._children),
        )
