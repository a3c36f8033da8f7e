"""
ClusterRunner: a Runner whose desired set is sharded over the live members of a group.

Every process applies the *same* desired set; each runs only its share::

    membership = RedisMembership("redis://10.0.0.5/0", "health-checks", ttl=5.0)
    runner = ClusterRunner(new_worker, membership=membership)
    runner.apply_tasks(endpoints)        # in every process, the whole set
    ...
    runner.stop()                        # hands this process's share over at once

How it works:

- **Identity across processes** is a stable key, ``key(task) -> str``. The
  default is ``repr(task)`` for str, int, float, bool, None, bytes, enums,
  tuples and dataclasses made of those (their ``repr`` is the same in every
  process); anything else needs ``key=``. Never Python's ``hash()``, which
  differs per process for strings.
- **Sharding** is rendezvous (highest random weight) hashing: a task belongs
  to the live member with the highest ``blake2b(member, key)``. A member
  joining takes about 1/N of the tasks from the others; one leaving gives its
  share to the others; nothing else moves.
- **Ownership** is a lease per task, held by the member's *session* (see
  `greenworks._cluster_membership`): one Lua call per heartbeat renews the
  session, and with it every lease, releases what the member gives up and
  claims what it is due, so Redis round trips per heartbeat do not grow with
  the number of tasks. A grant carries a fencing token (:meth:`lease`) for
  the task's own writes.
- **Handover never overlaps**: a member runs a task only while it holds its
  lease; it releases a lease only after the task's worker ended; a claim of a
  lease another live session holds is refused. A task moving on a join is
  therefore cancelled here, ends, is released, and only then starts there.
- **A dead member** (SIGKILL) stops renewing; its session expires after
  ``ttl`` and the next heartbeat of each other member (at most ``heartbeat``
  later) takes its tasks over. gunicorn's ``child_exit`` hook with
  `greenworks.coordination.release_dead` ends it at once instead.
- **Fail-safe**: a member that cannot renew (Redis unreachable, its hub
  blocked) cancels its workers once ``ttl - ttl/4`` passed since its last
  confirmed heartbeat was sent, and kills those still running at ``ttl``,
  before any other member can be granted their leases; it joins again (new
  session) once they all ended and Redis answers. After Redis lost its data,
  nothing is granted for one ttl, for the same reason.

Local workers run on an inner `greenworks.runner.Runner` (same states,
``status()``, ``stop_timeout``), keyed by the task keys.
"""

import dataclasses
import logging
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from gevent import Greenlet
from gevent.event import Event
from greenlet import getcurrent
from zope.interface import implementer

from greenworks import _checks
from greenworks._cluster_keys import default_key, member_weight, rendezvous_owner
from greenworks._cluster_membership import MembershipBeat, RedisMembership
from greenworks._component import Lifecycle, State, iso
from greenworks.clock import ClockLike
from greenworks.exceptions import DeadlineExceeded, RunnerClosedError, invalid_argument
from greenworks.interfaces import IClusterRunner, IContext, IMembership
from greenworks.runner import Runner, WorkerStatus

__all__ = ["ClusterRunner", "MembershipBeat", "RedisMembership", "default_key", "rendezvous_owner"]

logger = logging.getLogger(__name__)

# membership -> the ClusterRunner driving it (one driver each).
_DRIVERS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


class _Leased:
    """The inner Runner's worker for one key: runs the user's worker only while the lease is held."""

    __slots__ = ("runner", "key", "worker", "_run")

    def __init__(self, runner: "ClusterRunner", key: str, worker: Any, run: Callable[[Any], Any]) -> None:
        self.runner = runner
        self.key = key
        self.worker = worker
        self._run = run

    def run(self, ctx: Any) -> None:
        runner = self.runner
        # Checked and recorded without a switch in between, so a lease is
        # never released under a worker that is about to start.
        if ctx.err is not None or self.key not in runner._held:
            return
        runner._started(self.key)
        try:
            self._run(ctx)
        finally:
            runner._ended(self.key)

    def __repr__(self) -> str:
        return "<cluster worker %s: %r>" % (self.key, self.worker)


@implementer(IClusterRunner)
class ClusterRunner:
    """Default implementation of `IClusterRunner`.

    :param new_worker: ``new_worker(task)`` returns an `IWorker` or a callable
        ``f(ctx)``, as for `Runner`; called only on the member that runs the
        task, each time it starts it there.
    :keyword IMembership membership: the group (e.g. `RedisMembership`);
        driven by this runner alone.
    :keyword key: ``key(task) -> str``, the task's identity in every process
        (default: `default_key`). Tasks with equal keys collapse to the first.
    :keyword float stop_timeout: seconds a worker may ignore its cancelled
        context before it is killed (``None``: wait for ever); also the
        default of :meth:`stop`.
    :keyword str name: greenlet names, logs, snapshot().
    :keyword clock: an `IClock` (local timing: heartbeats, the fail-safe).
    :keyword logger: a ``logging.Logger``.
    :raises InvalidArgument: for a bad argument, or a membership that another
        ClusterRunner drives.

    Concurrency: one greenlet (``greenworks.cluster[<name>]``) makes the
    heartbeat rounds; :meth:`apply_tasks` records the set, wakes it and waits
    for its round. Reading methods never block.
    """

    def __init__(
        self,
        new_worker: Callable[[Any], Any],
        *,
        membership: Any,
        key: Callable[[Any], str] | None = None,
        stop_timeout: float | None = 10.0,
        name: str = "cluster",
        clock: ClockLike | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if not callable(new_worker):
            raise invalid_argument("new_worker", new_worker, "a callable new_worker(task) -> IWorker")
        if not IMembership.providedBy(membership):
            raise invalid_argument("membership", membership, "an IMembership (e.g. RedisMembership)")
        if key is not None and not callable(key):
            raise invalid_argument("key", key, "a callable key(task) -> str, or None")
        self._stop_timeout: float | None = _checks.seconds("stop_timeout", stop_timeout, none=True)
        self._life = Lifecycle(self, "cluster", name, clock, logger, __name__)
        try:
            if _DRIVERS.get(membership) is not None:
                raise invalid_argument("membership", membership, "a membership no other ClusterRunner uses")
            _DRIVERS[membership] = self
        except TypeError:
            pass  # not weak-referenceable: cannot check
        self._membership = membership
        self._new_worker = new_worker
        self._key = key or default_key
        self._clock = self._life.clock
        self._log = self._life.logger
        self._inner = Runner(
            self._make_worker, stop_timeout=self._stop_timeout, name=name, clock=clock, logger=self._log
        )
        self._ttl = float(membership.ttl)
        self._heartbeat = float(membership.heartbeat)
        self._margin = self._ttl / 4.0
        self._desired: dict[str, Any] = {}
        self._members: tuple[str, ...] = ()
        self._mine: set[str] = set()
        self._held: dict[str, int] = {}
        self._release: set[str] = set()
        self._live: dict[str, int] = {}
        self._workers: set[Greenlet] = set()
        self._session: str | None = None
        self._previous: str | None = None
        self._valid_until = 0.0
        self._last_sent = float("-inf")
        self._quiet_until = 0.0
        self._dirty = False
        self._followup = False
        self._started_rounds = 0
        self._done_rounds = 0
        self._round_event = Event()
        self._exit_event = Event()
        self._wake = Event()
        self._stop_requested = Event()
        self._poke_watchdog = Event()
        self._loop: Greenlet | None = None
        self._watchdog: Greenlet | None = None
        self._lapses = 0
        self._conflict_logged = False
        self._clean = True

    # -- reading -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._life.name

    @property
    def state(self) -> State:
        return self._life.state

    @property
    def member(self) -> str:
        return str(self._membership.member)

    @property
    def stop_timeout(self) -> float | None:
        return self._stop_timeout

    @property
    def members(self) -> tuple[str, ...]:
        """The live members at the latest heartbeat, sorted."""
        return self._members

    def tasks(self) -> list[Any]:
        return list(self._desired.values())

    def owned(self) -> list[Any]:
        return [task for key, task in self._desired.items() if key in self._held]

    def lease(self, task: Any) -> int | None:
        return self._held.get(self._key_of(task))

    def status(self) -> list[WorkerStatus]:
        result = []
        for status in self._inner.status():
            worker = status.worker
            result.append(
                dataclasses.replace(
                    status,
                    task=self._desired.get(status.task, status.task),
                    worker=worker.worker if isinstance(worker, _Leased) else worker,
                )
            )
        return result

    def snapshot(self) -> dict[str, Any]:
        """``{"component": "cluster", ...}``: membership, share, leases, the outage if any, local tasks."""
        error = self._membership.last_error
        snap = self._life.header()
        snap.update(
            group=self._membership.group,
            member=self.member,
            members=list(self._members),
            joined=self._session is not None,
            ttl=self._ttl,
            heartbeat=self._heartbeat,
            desired=len(self._desired),
            share=len(self._mine),
            owned=len(self._held),
            running=len(self._workers),
            quiet=self._quiet_until > self._clock.monotonic(),
            lapses=self._lapses,
            rounds=self._done_rounds,
            error=None if error is None else repr(error),
            error_since=iso(getattr(self._membership, "failing_since", None)),
            tasks=[status.as_dict() for status in self.status()],
        )
        return snap

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "ClusterRunner":
        """Join the group and start the heartbeat greenlet; idempotent; never blocks.

        :raises RunnerClosedError: after :meth:`stop` (a stopped runner stays stopped).
        """
        state = self._life.state
        if state is State.RUNNING:
            return self
        if state is not State.NEW:
            raise RunnerClosedError("cluster runner %r is stopped" % self.name)
        self._life.started()
        self._loop = self._life.spawn("greenworks.cluster[%s]" % self.name, self._run_loop)
        self._watchdog = self._life.spawn("greenworks.cluster[%s].watchdog" % self.name, self._watch)
        self._log.info("cluster %r: member %s of %s starting", self.name, self.member, self._membership.group)
        return self

    def __enter__(self) -> "ClusterRunner":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def apply_tasks(self, tasks: Iterable[Any], timeout: float | None = None) -> None:
        """Make the cluster's desired set *tasks*; see `IClusterRunner.apply_tasks`.

        Starts the runner if it is new. Returns after one heartbeat round
        that saw the new set (new tasks of this member's share that were free
        run from then on; those another member still holds start once it
        released them), and after local workers of removed tasks ended. A
        round that cannot reach Redis does not raise: the set is recorded and
        the outage shows in :meth:`snapshot`.

        :raises RunnerClosedError: after :meth:`stop`.
        :raises DeadlineExceeded: *timeout* passed before removed tasks' workers ended.
        :raises InvalidArgument: a task has no stable key, or a bad *timeout*.
        """
        timeout = _checks.seconds("timeout", timeout, none=True)
        keyed = self._keyed(tasks)
        if self._life.state is State.NEW:
            self.start()
        elif self._life.state is not State.RUNNING:
            raise RunnerClosedError("cluster runner %r is stopped" % self.name)
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        old = self._desired
        desired = {key: task for key, task in old.items() if key in keyed}
        added = [key for key in keyed if key not in desired]
        for key in added:
            desired[key] = keyed[key]
        removed = [key for key in old if key not in keyed]
        self._desired = desired
        self._mine.difference_update(removed)
        self._mine.update(self._share(added))
        self._dirty = True
        self._await_round(deadline)
        stale = [key for key in removed if self._live.get(key)]
        while stale:
            event = self._exit_event
            remaining = None if deadline is None else deadline - self._clock.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded("%d removed task(s) still running after %ss" % (len(stale), timeout))
            self._clock.wait(event, remaining)
            stale = [key for key in stale if self._live.get(key)]

    def stop(self, timeout: float | None = None) -> bool:
        """Stop every local worker, then leave the group so the others take its tasks at once.

        Blocks: cancels the workers, waits up to *timeout* seconds (default
        ``stop_timeout``) and kills those still running, then one round trip
        releases every lease and ends the session. If a killed worker
        survived, the session is not ended (its leases expire by ttl). A
        concurrent call waits for the same stop.

        :return bool: True if every worker ended in time.
        :raises ReentrantStopError: called from one of this runner's workers.
        """
        self._life.check_not_own("stop")
        timeout = self._stop_timeout if timeout is None else _checks.seconds("timeout", timeout)
        state = self._life.state
        if state is State.STOPPED:
            return self._clean
        if state is State.STOPPING:
            self._life.wait_stopped()
            return self._clean
        self._life.state = State.STOPPING
        self._stop_requested.set()
        self._wake.set()
        self._poke_watchdog.set()
        for greenlet in (self._loop, self._watchdog):
            if greenlet is not None:
                greenlet.join()
        session, self._session = self._session, None
        keys = set(self._held) | self._release
        self._held.clear()
        self._cancel_all()
        clean = self._life.finish(list(self._workers), timeout, "worker")
        if not self._workers:
            self._inner.stop()
            if session is not None:
                self._membership.leave(session, sorted(keys))
        elif session is not None:
            self._log.warning(
                "cluster %r: %d worker(s) survived stop; not leaving, their leases expire in %ss",
                self.name,
                len(self._workers),
                self._ttl,
            )
        self._release.clear()
        self._members = ()
        self._mine.clear()
        self._clean = clean
        self._log.info("cluster %r: member %s stopped", self.name, self.member)
        self._life.stopped(clean)
        return clean

    # -- the heartbeat -------------------------------------------------------

    def _run_loop(self) -> None:
        while not self._stop_requested.is_set():
            self._started_rounds += 1
            self._followup = False
            self._wake.clear()
            try:
                self._round()
            except Exception:  # never lose the heartbeat to one bad round
                self._log.exception("cluster %r: heartbeat round failed", self.name)
            self._done_rounds += 1
            event, self._round_event = self._round_event, Event()
            event.set()
            if not self._wake.is_set():
                self._clock.wait(self._wake, self._next_wait())

    def _next_wait(self) -> float:
        now: float = self._clock.monotonic()
        wait = self._last_sent + self._heartbeat - now
        if self._quiet_until > now:
            wait = min(wait, self._quiet_until - now)
        return max(wait, 0.0)

    def _watch(self) -> None:
        """The fail-safe, apart from the heartbeat so a slow round trip cannot delay it.

        Cancels every local worker once ``ttl - ttl/4`` passed since the last
        confirmed heartbeat was sent, and kills those still running at ``ttl``:
        the server cannot grant their leases to anybody before that.
        """
        while not self._stop_requested.is_set():
            now = self._clock.monotonic()
            wait: float | None = None
            if self._session is not None:
                deadline = self._valid_until - self._margin
                if now >= deadline:
                    self._lapse("no heartbeat confirmed for %.2f s" % (now - self._valid_until + self._ttl))
                    continue
                wait = deadline - now
            elif self._workers:
                if now >= self._valid_until:
                    self._life.finish(list(self._workers), 0, "worker")
                    continue
                wait = min(self._valid_until - now, self._heartbeat)
            self._clock.wait(self._poke_watchdog, wait)
            self._poke_watchdog.clear()

    def _round(self) -> None:
        if self._session is None:
            if self._workers:
                return  # never join again while the old session's workers still run
            session, join = uuid.uuid4().hex, True
        else:
            session, join = self._session, False
        claims = [key for key in self._desired if key in self._mine and key not in self._held]
        claimed = set(claims)
        releases = [key for key in self._release if key not in claimed]
        self._last_sent = sent = self._clock.monotonic()
        beat = self._membership.beat(session, join, claims, releases, previous=self._previous)
        if self._stop_requested.is_set():
            if join and beat is not None and beat.status == "ok":
                self._session = session  # so that stop() leaves it
            return
        if beat is None or (not join and self._session != session):
            return  # failed, or the watchdog ended this session meanwhile
        if beat.status == "conflict":
            if not self._conflict_logged:
                self._conflict_logged = True
                self._log.error(
                    "cluster %r: member id %s is used by another live process; not joining until it is"
                    " gone (give each process its own member=)",
                    self.name,
                    self.member,
                )
            return
        if beat.status != "ok":
            self._lapse("the server no longer knows its session")
            return
        self._conflict_logged = False
        if join:
            self._session = session
            self._previous = session
            self._poke_watchdog.set()
            self._log.log(
                logging.WARNING if self._lapses else logging.INFO,
                "cluster %r: member %s joined %s (%d members)",
                self.name,
                self.member,
                self._membership.group,
                len(beat.members),
            )
        self._valid_until = sent + self._ttl
        self._release.difference_update(releases)
        self._quiet_until = sent + beat.quiet if beat.quiet > 0 else 0.0
        for key, token in zip(claims, beat.tokens, strict=False):
            if token:
                self._held[key] = token
                self._release.discard(key)
                self._dirty = True
        if beat.members != self._members:
            self._members = beat.members
            self._mine = self._share(self._desired)
            self._dirty = True
            if any(key not in self._held for key in self._mine):
                self._followup = True
                self._wake.set()
        if self._dirty:
            self._reconcile()

    def _share(self, keys: Iterable[str]) -> set[str]:
        """The keys among *keys* that rendezvous hashing gives this member."""
        me = self.member
        members = self._members
        if me not in members:
            return set()
        if len(members) == 1:
            return set(keys)
        raw = [(m, m.encode("utf-8")) for m in members]
        mine = set()
        for key in keys:
            kb = key.encode("utf-8")
            best, best_weight = None, b""
            for member, mb in raw:
                weight = member_weight(mb, kb)
                if weight > best_weight:
                    best, best_weight = member, weight
            if best == me:
                mine.add(key)
        return mine

    def _reconcile(self) -> None:
        """Run exactly the held keys of this member's share; release what ended. Never waits."""
        self._dirty = False
        target = [key for key in self._desired if key in self._held and key in self._mine]
        try:
            self._inner.apply_tasks(target, timeout=0)
        except DeadlineExceeded:
            pass  # stale workers still ending; _ended() releases them
        except RunnerClosedError:
            return
        wanted = set(target)
        for key in list(self._held):
            if key not in wanted and not self._live.get(key):
                del self._held[key]
                self._release.add(key)

    def _cancel_all(self) -> None:
        try:
            self._inner.apply_tasks([], timeout=0)
        except (DeadlineExceeded, RunnerClosedError):
            pass

    def _lapse(self, why: str) -> None:
        self._lapses += 1
        self._log.warning(
            "cluster %r: member %s lost its session (%s); stopping its %d task(s) until it joins again",
            self.name,
            self.member,
            why,
            len(self._held),
        )
        self._session = None
        self._held.clear()
        self._release.clear()
        self._poke_watchdog.set()
        self._cancel_all()

    def _await_round(self, deadline: float | None) -> None:
        target = self._started_rounds + 1
        self._wake.set()
        while self._done_rounds < target or self._followup:
            if self._loop is None or self._loop.dead:
                return
            remaining = None if deadline is None else deadline - self._clock.monotonic()
            if remaining is not None and remaining <= 0:
                return
            self._clock.wait(self._round_event, remaining)

    # -- workers -------------------------------------------------------------

    def _make_worker(self, key: str) -> _Leased:
        worker = self._new_worker(self._desired[key])
        run = getattr(worker, "run", None)
        if not callable(run):
            if not callable(worker):
                raise invalid_argument("new_worker(task)", worker, "an IWorker or a callable f(ctx)")
            run = worker
        return _Leased(self, key, worker, run)

    def _started(self, key: str) -> None:
        self._live[key] = self._live.get(key, 0) + 1
        greenlet = getcurrent()
        self._workers.add(greenlet)
        self._life.adopt(greenlet)

    def _ended(self, key: str) -> None:
        left = self._live.get(key, 1) - 1
        if left > 0:
            self._live[key] = left
        else:
            self._live.pop(key, None)
        self._workers.discard(getcurrent())
        if not left and key in self._held and not (key in self._desired and key in self._mine):
            del self._held[key]
            self._release.add(key)
            self._wake.set()
        event, self._exit_event = self._exit_event, Event()
        event.set()

    def _key_of(self, task: Any) -> str:
        key = self._key(task)
        if not isinstance(key, str):
            raise invalid_argument("key(task)", key, "a str")
        return key

    def _keyed(self, tasks: Iterable[Any]) -> dict[str, Any]:
        if isinstance(tasks, (str, bytes)):
            raise invalid_argument("tasks", tasks, "an iterable of tasks, not a single string")
        if IContext.providedBy(tasks):
            raise invalid_argument("tasks", tasks, "an iterable of tasks")
        try:
            items = list(tasks)
        except TypeError:
            raise invalid_argument("tasks", tasks, "an iterable of tasks") from None
        keyed: dict[str, Any] = {}
        for task in items:
            key = self._key_of(task)
            if key not in keyed:
                keyed[key] = task
        return keyed

    def __repr__(self) -> str:
        return "<greenworks.ClusterRunner %r %s member=%s tasks=%d owned=%d>" % (
            self.name,
            self._life.state.value,
            self.member,
            len(self._desired),
            len(self._held),
        )
