"""
Runner: keep exactly one worker greenlet per desired task (reconciliation).

You describe *what* should run as a set of tasks (hashable, immutable values,
usually frozen dataclasses) and call :meth:`Runner.apply_tasks` with the whole
set every time it changes. The runner diffs it against what runs now, starts a
worker for every new task and stops the workers of tasks no longer listed::

    @dataclasses.dataclass(frozen=True)
    class Endpoint:
        url: str

    def new_worker(endpoint):
        def poll(ctx):
            while ctx.sleep(5.0):
                check(endpoint.url)
        return poll

    runner = Runner(new_worker, stop_timeout=10.0)
    runner.apply_tasks([Endpoint("http://a/health"), Endpoint("http://b/health")])
    ...
    runner.apply_tasks([Endpoint("http://b/health")])  # a's worker is cancelled
    runner.stop()

Identity is Python's ``hash()`` and ``==``, a dict's semantics: ``__eq__``
is only consulted for equal hashes, and unequal tasks with equal hashes are
separate workers.

Differences from the original (grafana/agent's ``runner``), each pinned by a test:

- ``apply_tasks`` is serialised internally, so concurrent calls never start
  two workers for one task.
- A stale worker that is still exiting (after an ``apply_tasks`` that was
  cancelled) stays tracked until its greenlet ends, and a new worker for an
  equal task does not call ``run`` before the old one ended: two copies of
  one task never run at once.
- An exception from ``new_worker`` or ``run`` is caught, logged once and shown
  by :meth:`Runner.status`; it never reaches the hub.
- ``stop_timeout`` kills (``GreenletExit``) a worker that ignores its
  cancelled context, and ``restart_exited=True`` restarts workers that ended
  by themselves (the original never restarts them; that stays the default).
"""

import dataclasses
import datetime
import enum
import itertools
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from types import MethodType
from typing import Any

import gevent
from gevent import GreenletExit
from gevent.event import Event
from gevent.lock import Semaphore
from zope.interface import implementer

from greenworks import _checks
from greenworks._component import Lifecycle, State
from greenworks.clock import ClockLike, TimerHandleLike
from greenworks.context import Context, with_cancel
from greenworks.events import WorkerExited, WorkerStarted
from greenworks.exceptions import DeadlineExceeded, RunnerClosedError, invalid_argument
from greenworks.interfaces import IContext, IRunner

__all__ = ["DEFAULT_STOP_TIMEOUT", "Runner", "WorkerInfo", "WorkerState", "WorkerStatus"]

logger = logging.getLogger(__name__)

#: Seconds a cancelled worker may take to return before it is killed.
DEFAULT_STOP_TIMEOUT = 10.0

_MAX_REPR = 60


def _short_repr(task: object) -> str:
    try:
        text = repr(task)
    except Exception:  # a broken __repr__ must not stop the worker from starting
        return "<%s object>" % type(task).__name__
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def _as_datetime(timestamp: float | None, tz: datetime.tzinfo | None) -> datetime.datetime | None:
    return None if timestamp is None else datetime.datetime.fromtimestamp(timestamp, tz)


class WorkerState(enum.Enum):
    """Where one worker of a `~greenworks.runner.Runner` is in its life.

    ``STARTING`` (spawned; ``run`` not called yet, e.g. waiting for an older
    worker of an equal task to end) -> ``RUNNING`` -> ``STOPPING`` (its
    context was cancelled, ``run`` has not returned) -> one of ``EXITED``
    (``run`` returned), ``FAILED`` (``new_worker`` or ``run`` raised; see
    ``error``) or ``KILLED`` (ended by ``GreenletExit``, e.g. after
    ``stop_timeout``). A worker may skip ``STOPPING`` when ``run`` returns by
    itself.
    """

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"
    FAILED = "failed"
    KILLED = "killed"


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """An immutable snapshot of one worker, as returned by ``Runner.worker_info()``.

    :ivar task: the tracked task object (the first one applied).
    :ivar worker: what ``new_worker(task)`` returned, or None if it raised.
    :ivar WorkerState state: the state when the snapshot was taken.
    :ivar started_at: aware ``datetime`` (runner's clock) when ``run`` was called, or None.
    :ivar exited_at: aware ``datetime`` when it ended, or None while alive.
    :ivar error: the exception ``new_worker`` or ``run`` raised, or None.
    """

    __slots__ = ("task", "worker", "state", "started_at", "exited_at", "error")

    task: Any
    worker: Any
    state: WorkerState
    started_at: datetime.datetime | None
    exited_at: datetime.datetime | None
    error: BaseException | None

    @property
    def alive(self) -> bool:
        """Whether the worker's greenlet has not ended yet."""
        return self.state in (WorkerState.STARTING, WorkerState.RUNNING, WorkerState.STOPPING)

    def as_dict(self) -> dict[str, Any]:
        """Return this snapshot as JSON-serialisable plain data (reprs, aware UTC ISO 8601 times)."""
        return {
            "task": _short_repr(self.task),
            "state": self.state.value,
            "started_at": _utc_iso(self.started_at),
            "exited_at": _utc_iso(self.exited_at),
            "error": None if self.error is None else repr(self.error),
        }


#: Deprecated name of `WorkerInfo`.
WorkerStatus = WorkerInfo


def _utc_iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(datetime.timezone.utc).isoformat()


_LIVE = (WorkerState.STARTING, WorkerState.RUNNING, WorkerState.STOPPING)


class _Slot:
    """One worker of one task: its greenlet, context and lifecycle record.

    One per live worker, so it holds no more than it must: ten slots, 112
    bytes (the runner is not kept, and "finished" is ``exited_at`` being set).
    """

    __slots__ = (
        "task",
        "worker",
        "ctx",
        "greenlet",
        "state",
        "started_at",
        "exited_at",
        "error",
        "kill_timer",
        "waiters",
    )

    def __init__(self, task: Any) -> None:
        self.task = task
        self.worker: Any = None
        self.ctx: Context | None = None
        self.greenlet: Any = None
        self.state = WorkerState.STARTING
        self.started_at: float | None = None
        self.exited_at: float | None = None
        self.error: BaseException | None = None
        self.kill_timer: TimerHandleLike | None = None
        self.waiters: list[_Waiter] | None = None

    def info(self, tz: datetime.tzinfo | None) -> WorkerInfo:
        # Times are kept as POSIX floats (cheap on the hot path) and only
        # turned into datetimes for a snapshot.
        return WorkerInfo(
            self.task,
            self.worker,
            self.state,
            _as_datetime(self.started_at, tz),
            _as_datetime(self.exited_at, tz),
            self.error,
        )


class _Waiter:
    """Counts exiting workers down to zero, then sets ``event``."""

    __slots__ = ("pending", "event")

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.event = Event()
        if not pending:
            self.event.set()

    def one_exited(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.event.set()

    def wake(self, _source: object = None) -> None:
        self.event.set()


@implementer(IRunner)
class Runner:
    """Default implementation of `IRunner`.

    :param new_worker: ``new_worker(task)`` returns an `IWorker` (an object
        with ``run(ctx)``) or a plain callable ``f(ctx)``. It is called
        synchronously inside ``apply_tasks``, exactly once per newly added
        task (and once per restart with ``restart_exited``).
    :keyword float stop_timeout: seconds a stale worker may ignore its
        cancelled context before it is killed with ``GreenletExit``, in
        ``apply_tasks`` and in ``stop()`` (default 10 s). ``None`` waits
        for ever.
    :keyword bool restart_exited: if true, a worker whose ``run`` returned or
        raised is replaced by a fresh one (``new_worker`` called again) on the
        next ``apply_tasks`` that still lists its task. Default False: the
        entry stays and only removing then re-adding the task restarts it.
    :keyword str name: shown in greenlet names (``greenworks.<name>[task]``),
        log lines and :meth:`snapshot`.
    :keyword clock: an `IClock`; ``None`` for the real clock.
    :keyword logger: a ``logging.Logger``; ``None`` for this module's.
    :raises InvalidArgument: for a bad argument, naming it and its value.

    Concurrency: ``apply_tasks`` calls are serialised by a lock held only
    while the diff is applied (``new_worker`` calls, spawning, cancelling),
    never while waiting for stale workers to exit, so a slow worker does not
    block another caller's reconciliation. ``tasks()``, ``workers()``,
    ``status()`` and ``snapshot()`` never block.
    """

    def __init__(
        self,
        new_worker: Any,
        *,
        stop_timeout: float | None = DEFAULT_STOP_TIMEOUT,
        restart_exited: bool = False,
        name: str = "runner",
        clock: ClockLike | None = None,
        logger: Any = None,
    ) -> None:
        if not callable(new_worker):
            raise invalid_argument("new_worker", new_worker, "a callable new_worker(task) -> IWorker")
        self._stop_timeout = _checks.seconds("stop_timeout", stop_timeout, none=True)
        if not isinstance(restart_exited, bool):
            raise invalid_argument("restart_exited", restart_exited, "a bool")
        self._life = life = Lifecycle(self, "runner", name, clock, logger, __name__)
        self._new_worker = new_worker
        self._restart_exited = restart_exited
        self._name = life.name
        self._clock = life.clock
        self._logger = life.logger
        self._root = with_cancel(None, clock=self._clock)
        self._lock = Semaphore(1)
        self._applying: Any = None
        self._closed = False
        self._last_clean = True
        # task -> _Slot for every desired task, in the order tasks were first applied.
        self._active: dict[Any, _Slot] = {}
        # task -> [_Slot, ...]: cancelled workers whose greenlet has not ended yet.
        self._stopping: dict[Any, list[_Slot]] = {}
        # task -> _Slot: desired tasks whose greenlet ended (only consulted with restart_exited).
        self._exited: dict[Any, _Slot] = {}
        # Every worker greenlet runs this one bound method: binding it per
        # spawn would cost each parked worker 64 bytes.
        self._worker_main = self._run_worker
        # A Runner works from construction: there is nothing to start.
        life.started()

    # -- reading -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def state(self) -> State:
        return self._life.state

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stop_timeout(self) -> float | None:
        """Seconds a cancelled worker may take before it is killed; None: wait for ever (read-only)."""
        return self._stop_timeout

    def tasks(self) -> list[Any]:
        """Return the desired tasks, in the order they were first applied.

        A task whose worker already returned stays listed until a later
        ``apply_tasks`` drops it. Tasks whose cancelled worker is still
        exiting are not listed (see :meth:`worker_info`).
        """
        return list(self._active)

    def workers(self) -> list[Any]:
        """Return the worker objects of :meth:`tasks`, in the same order.

        A task whose ``new_worker`` call raised has no worker and is skipped.
        """
        return [slot.worker for slot in self._active.values() if slot.worker is not None]

    def worker_info(self) -> list[WorkerInfo]:
        """Return a `WorkerInfo` per desired task, then one per worker still exiting. Never blocks.

        :return list: of frozen `WorkerInfo` snapshots.
        """
        tz = self._clock.now().tzinfo
        result = [slot.info(tz) for slot in self._active.values()]
        for slots in self._stopping.values():
            result.extend(slot.info(tz) for slot in slots)
        return result

    def status(self) -> list[WorkerInfo]:
        """Deprecated name of :meth:`worker_info`."""
        return self.worker_info()

    def snapshot(self) -> dict[str, Any]:
        """Return the runner's state as JSON-serialisable plain data.

        ``{"component": "runner", "name": ..., "state": "running",
        "started_at": ..., "closed": bool, "workers": <greenlets alive>,
        "stop_timeout": seconds or None, "tasks": [{"task": repr, "state":
        "running", "started_at": ISO 8601 UTC or None, "exited_at": ...,
        "error": repr or None}, ...]}``, tasks in :meth:`worker_info` order.
        """
        tasks = [info.as_dict() for info in self.worker_info()]
        snap = self._life.header()
        snap.update(
            closed=self._closed,
            workers=sum(1 for item in tasks if item["state"] in _LIVE_VALUES),
            stop_timeout=self._stop_timeout,
            tasks=tasks,
        )
        return snap

    # -- reconciling ---------------------------------------------------------

    def apply_tasks(
        self, tasks: Iterable[Any], ctx: Context | None = None, timeout: float | None = None
    ) -> None:
        """Make the running workers match *tasks*, then wait for stale workers to exit.

        New tasks get a worker (``new_worker`` is called synchronously, the
        worker's ``run(ctx)`` starts in its own greenlet); workers of tasks
        not listed get their context cancelled. Tasks already tracked keep
        their worker and their original task object. Workers for new tasks
        start before stale ones have finished exiting, except that a worker
        never overlaps an older, still-exiting worker of an *equal* task: it
        calls ``run`` only after that one ended.

        Cost: one ``hash()`` and at most one ``==`` per listed task (done by
        dict/set code in C), plus work proportional to the change. Re-applying
        an unchanged set starts, stops, allocates and logs nothing per task.

        :param tasks: an iterable of hashable tasks; equal tasks collapse to
            the first occurrence.
        :param ctx: an `IContext`, or None. If it is done, or becomes done
            while stale workers are exiting, the reconciliation is still
            completed but the call stops waiting and raises its error (as the original
            returns ``ctx.Err()``).
        :param float timeout: the most seconds to wait for stale workers.
        :raises RunnerClosedError: after :meth:`stop`; nothing is started.
        :raises Canceled: *ctx* was cancelled.
        :raises DeadlineExceeded: *ctx*'s deadline or *timeout* passed before
            every stale worker exited.
        :raises InvalidArgument: for a bad argument; nothing is changed.
        """
        desired = self._desired(tasks)
        if ctx is not None and not IContext.providedBy(ctx):
            raise invalid_argument("ctx", ctx, "an IContext or None")
        timeout = _checks.seconds("timeout", timeout, none=True)
        if self._applying is gevent.getcurrent():
            raise RuntimeError("apply_tasks called from inside new_worker of the same Runner")
        with self._lock:
            self._applying = gevent.getcurrent()
            try:
                stale = self._reconcile(desired)
            finally:
                self._applying = None
        if stale:
            self._wait_for(stale, ctx, timeout)
        if ctx is not None:
            ctx.raise_if_done()

    def _desired(self, tasks: Iterable[Any]) -> dict[Any, int]:
        if isinstance(tasks, (str, bytes)):
            raise invalid_argument("tasks", tasks, "an iterable of tasks, not a single string")
        if not isinstance(tasks, Collection):
            # A one-shot iterator: keep its items so a bad one can be named below.
            try:
                tasks = list(tasks)
            except TypeError:
                raise invalid_argument("tasks", tasks, "an iterable of hashable tasks") from None
        try:
            # A dict keeps the first of equal keys ("first one wins"); the
            # value is the task's (last) position, to start new workers in order.
            return dict(zip(tasks, itertools.count()))
        except TypeError:
            pass
        for task in tasks:
            try:
                hash(task)
            except TypeError:
                raise invalid_argument("tasks", task, "hashable (e.g. a frozen dataclass)") from None
        raise invalid_argument("tasks", tasks, "an iterable of hashable tasks")

    def _reconcile(self, desired: dict[Any, int]) -> Sequence[_Slot]:
        """Apply the diff under the lock; return the stale slots to wait for."""
        if self._closed:
            raise RunnerClosedError()
        active = self._active
        # A set copied from a dict, updated with a dict, reuses the hashes the
        # dicts stored: no task's __hash__ runs here, and __eq__ at most once
        # per listed task (a single pass in C). What follows is O(change).
        changed = set(active)
        changed.symmetric_difference_update(desired)
        restart = self._restart_exited and self._exited
        if not changed and not restart:
            return ()
        removed: list[Any] = []
        added: list[Any] = []
        for task in changed:
            # Removed tasks are the tracked key objects themselves (an identity hit).
            (removed if task in active else added).append(task)
        if len(added) == len(desired):
            added = list(desired)
        elif added:
            added = sorted(added, key=desired.__getitem__)
        restarted = [task for task in self._exited if task in desired] if restart else ()
        self._logger.debug(
            "runner %s: applying %d tasks: %d added, %d removed, %d restarted",
            self._name,
            len(desired),
            len(added),
            len(removed),
            len(restarted),
        )
        stale: list[_Slot] = []
        for task in removed:
            slot = active.pop(task)
            if self._exited:
                self._exited.pop(task, None)
            if slot.ctx is not None:
                slot.ctx.cancel()
            if slot.greenlet is not None and not slot.greenlet.dead:
                self._stop_slot(slot)
                self._stopping.setdefault(task, []).append(slot)
                stale.append(slot)
        for task in restarted:
            del self._exited[task]
            self._start(task)
        for task in added:
            self._start(task)
        return stale

    def _start(self, task: Any) -> None:
        """Create, register and spawn the worker for *task*, which is (re)added now."""
        slot = _Slot(task)
        try:
            worker = self._new_worker(task)
            # Duck-typed on purpose (an IWorker need not declare it); cheaper
            # than IWorker.providedBy on this per-task path, too.
            run = getattr(worker, "run", None)
            if not callable(run):
                if not callable(worker):
                    raise invalid_argument("new_worker(task)", worker, "an IWorker or a callable f(ctx)")
                run = worker
            elif type(run) is MethodType and run.__self__ is worker:
                # An ordinary run method: the greenlet calls worker.run(ctx)
                # itself, which binds nothing, rather than keeping this bound
                # method (64 bytes) for as long as the worker is parked.
                run = None
        except Exception as exc:
            # Tracked as failed, like a worker whose run raised: visible in
            # status(), retried by restart_exited, never lost silently.
            slot.state = WorkerState.FAILED
            slot.error = exc
            slot.exited_at = self._clock.time()
            self._active[task] = slot
            self._exited[task] = slot
            self._logger.exception("runner %s: new_worker(%s) failed", self._name, _short_repr(task))
            return
        slot.worker = worker
        slot.ctx = with_cancel(self._root)
        previous = self._stopping.get(task) if self._stopping else None
        previous = previous[-1].greenlet if previous else None
        self._active[task] = slot
        slot.greenlet = self._life.spawn(
            "greenworks.%s[%s]" % (self._name, _short_repr(task)),
            self._worker_main,
            slot,
            run,
            previous,
        )

    def _run_worker(self, slot: _Slot, run: Callable[[Context], object] | None, previous: Any) -> None:
        """The body of every worker greenlet; *run* is None for ``slot.worker.run``."""
        try:
            if previous is not None:
                # An older worker of an equal task is still exiting: never overlap it.
                previous.join()
            assert slot.ctx is not None  # _start set it before spawning this greenlet
            slot.state = WorkerState.RUNNING if slot.ctx.err is None else WorkerState.STOPPING
            slot.started_at = self._clock.time()
            self._life.emit(WorkerStarted, slot.task)
            try:
                if run is None:
                    slot.worker.run(slot.ctx)
                else:
                    run(slot.ctx)
            except Exception as exc:
                slot.state = WorkerState.FAILED
                slot.error = exc
                self._logger.exception("runner %s: worker for %s failed", self._name, _short_repr(slot.task))
            except BaseException:
                # GreenletExit (stop_timeout), KeyboardInterrupt, SystemExit: not a worker failure.
                slot.state = WorkerState.KILLED
                raise
            else:
                slot.state = WorkerState.EXITED
        finally:
            # Bookkeeping here rather than in a greenlet link keeps the hot
            # path free of hub callbacks; _kill_slot adds a link for the one
            # case this misses, a greenlet killed before it ever ran.
            self._slot_exited(slot)

    def _slot_exited(self, slot: _Slot) -> None:
        if slot.exited_at is not None:
            # Already counted (a killed worker's link after its own finally).
            return
        slot.exited_at = self._clock.time()
        if slot.kill_timer is not None:
            slot.kill_timer.cancel()
            slot.kill_timer = None
        if slot.state in _LIVE:
            # Killed before it was ever switched to.
            slot.state = WorkerState.KILLED
        task = slot.task
        if self._active.get(task) is slot:
            self._exited[task] = slot
        else:
            stopping = self._stopping.get(task)
            if stopping is not None:
                for index, other in enumerate(stopping):
                    if other is slot:
                        del stopping[index]
                        break
                if not stopping:
                    del self._stopping[task]
        if slot.ctx is not None and slot.ctx.err is None:
            # Releases the context from the runner's root; the worker is gone anyway.
            slot.ctx.cancel()
        self._life.emit(WorkerExited, task, slot.error)
        waiters, slot.waiters = slot.waiters, None
        if waiters:
            for waiter in waiters:
                waiter.one_exited()

    def _stop_slot(self, slot: _Slot) -> None:
        """Mark a cancelled, live worker as stopping and arm its stop_timeout."""
        if slot.state is WorkerState.RUNNING:
            slot.state = WorkerState.STOPPING
        if self._stop_timeout is not None and slot.kill_timer is None:
            slot.kill_timer = self._clock.call_later(self._stop_timeout, self._kill_slot, slot)

    def _kill_slot(self, slot: _Slot) -> None:
        # Runs in the hub (or inside FakeClock.advance): must not block.
        slot.kill_timer = None
        greenlet = slot.greenlet
        if greenlet is not None and not greenlet.dead:
            self._logger.warning(
                "runner %s: worker for %s ignored cancellation for %ss; killing it",
                self._name,
                _short_repr(slot.task),
                self._stop_timeout,
            )
            greenlet.kill(GreenletExit, block=False)
            greenlet.rawlink(lambda _greenlet: self._slot_exited(slot))

    def _wait_for(self, slots: Sequence[_Slot], ctx: Context | None, timeout: float | None) -> None:
        if ctx is not None and ctx.err is not None:
            # Already done: return at once, without even a trip through the hub.
            ctx.raise_if_done()
        waiter = _Waiter(len(slots))
        for slot in slots:
            if slot.waiters is None:
                slot.waiters = [waiter]
            else:
                slot.waiters.append(waiter)
        if ctx is not None:
            ctx.done.rawlink(waiter.wake)
        try:
            self._clock.wait(waiter.event, timeout)
        finally:
            if ctx is not None:
                ctx.done.unlink(waiter.wake)
            if waiter.pending > 0:
                for slot in slots:
                    if slot.waiters and waiter in slot.waiters:
                        slot.waiters.remove(waiter)
        if waiter.pending > 0:
            if ctx is not None:
                ctx.raise_if_done()
            raise DeadlineExceeded("%d stale workers still exiting after %ss" % (waiter.pending, timeout))

    # -- stopping ------------------------------------------------------------

    def start(self) -> "Runner":
        """See `IComponent.start`: a Runner runs from construction, so this returns it.

        :raises RunnerClosedError: after :meth:`stop` (a Runner does not restart).
        """
        if self._closed:
            raise RunnerClosedError("runner %r is stopped and cannot start again" % self._name)
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """See `IComponent.stop`: cancel every worker and block until each one's greenlet ended.

        A worker that ignores its cancelled context for ``stop_timeout``
        seconds is killed; whatever is still alive *timeout* seconds after
        the call (on the clock; ``None``: no overall limit) is killed too.
        Idempotent: a second or concurrent call blocks the same way and
        returns the first call's answer. ``tasks()`` and ``workers()`` still
        list the tracked entries afterwards.

        :return bool: True if every worker returned by itself; False if one
            had to be killed.
        :raises ReentrantStopError: from one of the runner's own workers.
        """
        timeout = _checks.seconds("timeout", timeout, none=True)
        life = self._life
        life.check_not_own("stop")
        if self._closed:
            life.wait_stopped()
            return self._last_clean
        self._closed = True
        life.state = State.STOPPING
        self._root.cancel()
        # Let an apply_tasks in progress finish its step, so every worker it
        # spawns is seen below (their contexts are already cancelled).
        with self._lock:
            live = []
            for slot in self._active.values():
                if slot.greenlet is not None and not slot.greenlet.dead:
                    self._stop_slot(slot)
                    live.append(slot)
            for slots in self._stopping.values():
                for slot in slots:
                    if not slot.greenlet.dead:
                        self._stop_slot(slot)
                        live.append(slot)
        self._logger.info("runner %s: stopping %d workers", self._name, len(live))
        clean = True
        if live:
            try:
                self._wait_for(live, None, timeout)
            except DeadlineExceeded:
                pass
            clean = life.finish([slot.greenlet for slot in live], 0, "worker")
            clean = clean and not any(slot.state is WorkerState.KILLED for slot in live)
        self._last_clean = clean
        life.stopped(clean)
        return clean

    def __enter__(self) -> "Runner":
        return self.start()

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return "<greenworks.Runner %r %s tasks=%d stopping=%d>" % (
            self._name,
            self._life.state.value,
            len(self._active),
            sum(len(slots) for slots in self._stopping.values()),
        )


_LIVE_VALUES = frozenset(state.value for state in _LIVE)
