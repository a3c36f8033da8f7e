"""
The one lifecycle every greenworks component composes.

A component (Runner, Dispatcher, TaskManager, JobRunner, and the ones built on
them) owns one :class:`Lifecycle` and delegates to it what all of them do the
same way:

- its name, clock and logger, checked once;
- its :class:`State` and the moment it started;
- spawning its greenlets, named and tracked once, in the process-wide
  registry of `greenworks._greenlets` the test suite checks for leaks; each
  greenlet records the Lifecycle that spawned it (its ``owner``), so
  ``stop()`` can tell its own greenlets from the caller's
  (:meth:`Lifecycle.check_not_own`) and prove none is left;
- the join-then-kill escalation of ``stop(timeout)`` (:meth:`Lifecycle.finish`);
- the header of every ``snapshot()`` (:meth:`Lifecycle.header`);
- emitting lifecycle events (:meth:`Lifecycle.emit`);
- telling which component a greenlet belongs to (:func:`owner_of`), for the
  hub-blocking attribution of `greenworks.monitor`.

Composition, not a base class: each component keeps its own growth and
retirement rules and reads nothing from here but these methods.
"""

import datetime
import enum
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import zope.event
from gevent import Greenlet
from gevent.event import Event
from greenlet import getcurrent

from greenworks import _checks, _greenlets
from greenworks.clock import ClockLike, get_clock
from greenworks.events import ComponentStarted, ComponentStopped, notify
from greenworks.exceptions import ReentrantStopError, invalid_argument

__all__ = ["Lifecycle", "State", "check_logger", "iso", "owner_of"]

_UTC = datetime.timezone.utc
#: Seconds ``finish`` waits for killed greenlets to die before giving up on them.
KILL_GRACE = 5.0


class State(enum.Enum):
    """Where a component is in its lifecycle; the same states for every component.

    ``NEW`` (built, not started) -> ``RUNNING`` -> (``DRAINING``: a Dispatcher
    running its backlog before it stops) -> ``STOPPING`` -> ``STOPPED``.
    """

    NEW = "new"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


_LOGGER_METHODS = ("debug", "info", "warning", "error", "exception")


def check_logger(logger: Any, default: str) -> Any:
    """Return *logger*, or ``logging.getLogger(default)`` for None.

    :raises InvalidArgument: *logger* lacks the methods of a ``logging.Logger``.
    """
    if logger is None:
        return logging.getLogger(default)
    if not all(callable(getattr(logger, method, None)) for method in _LOGGER_METHODS):
        raise invalid_argument("logger", logger, "a logging.Logger or None")
    return logger


def iso(timestamp: float | None) -> str | None:
    """Return a POSIX *timestamp* as aware UTC ISO 8601, the one format of every snapshot."""
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, _UTC).isoformat()


# Greenlet -> the Lifecycle that last adopted it (`Lifecycle.adopt`), process-wide.
# Only adopted greenlets are here (a ClusterRunner adopts its inner Runner's
# workers): a spawned greenlet's Lifecycle is its ``owner`` attribute. Weak on
# the greenlet: an entry goes with it.
_adopters: "weakref.WeakKeyDictionary[Any, Lifecycle]" = weakref.WeakKeyDictionary()


def owner_of(greenlet: Any) -> "Lifecycle | None":
    """Return the `Lifecycle` whose component spawned (or last adopted) *greenlet*, or None.

    O(1); never switches. None for a greenlet no component tracks (the
    caller's, gevent's, or one spawned before its component composed a
    Lifecycle).
    """
    if _adopters:
        try:
            adopter = _adopters.get(greenlet)
        except TypeError:  # not weak-referenceable: nobody's
            return None
        if adopter is not None:
            return adopter
    if _greenlets.spawned_here(greenlet):
        owner: Lifecycle | None = greenlet.owner
        return owner
    return None


def _all_dead(greenlets: list[Greenlet]) -> Event:
    """An Event set once every greenlet in *greenlets* has ended."""
    event = Event()
    pending = [g for g in greenlets if not g.dead]
    if not pending:
        event.set()
        return event
    left = [len(pending)]

    def one_died(_greenlet: Greenlet) -> None:
        left[0] -= 1
        if left[0] <= 0:
            event.set()

    for greenlet in pending:
        greenlet.rawlink(one_died)
    return event


class Lifecycle:
    """What every component does the same way; a component owns one as ``self._life``.

    :param owner: the component (the ``component`` of its events).
    :param str kind: what it is, e.g. ``"dispatcher"`` (the snapshot's ``component``).
    :param str name: its name, checked non-empty.
    :param clock: an `IClock` or None.
    :param logger: a ``logging.Logger`` or None (``greenworks.<kind module>``).
    :param str default_logger: the logger name used when *logger* is None.
    :raises InvalidArgument: for a bad name, clock or logger, naming it.
    """

    __slots__ = ("owner", "kind", "name", "clock", "logger", "state", "started_at", "_adopted", "_stopped")

    def __init__(
        self, owner: Any, kind: str, name: Any, clock: ClockLike | None, logger: Any, default_logger: str
    ) -> None:
        self.owner = owner
        self.kind = kind
        self.name = _checks.name("name", name)
        self.clock = get_clock(clock)
        self.logger = check_logger(logger, default_logger)
        self.state = State.NEW
        #: POSIX time of the last start (the clock's), or None.
        self.started_at: float | None = None
        # The greenlets this component adopted (rare: created on the first adopt).
        self._adopted: weakref.WeakSet[Any] | None = None
        self._stopped = Event()
        self._stopped.set()

    # -- state -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.state is State.RUNNING or self.state is State.DRAINING

    def started(self) -> None:
        """Enter RUNNING now; emit `ComponentStarted`."""
        self.state = State.RUNNING
        self.started_at = self.clock.time()
        self._stopped.clear()
        self.emit(ComponentStarted)

    def stopped(self, clean: bool) -> None:
        """Enter STOPPED; wake whoever waits in :meth:`wait_stopped`; emit `ComponentStopped`."""
        self.state = State.STOPPED
        self._stopped.set()
        self.emit(ComponentStopped, clean)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until the component reached STOPPED (for a second, concurrent ``stop()``)."""
        return self.clock.wait(self._stopped, timeout)

    # -- greenlets -------------------------------------------------------------

    def spawn(self, name: str, func: Callable[..., Any], *args: Any) -> Greenlet:
        """Start ``func(*args)`` in a greenlet called *name*, owned by this Lifecycle, tracked process-wide.

        Never switches: the greenlet runs at the next switch.
        """
        greenlet = _greenlets.spawn(name, func, *args)
        greenlet.owner = self
        return greenlet

    def adopt(self, greenlet: Greenlet) -> Greenlet:
        """Track a greenlet spawned by other means (or by another component) as this one's too.

        From then on it is in :meth:`alive` and :meth:`is_own` here, and
        `owner_of` names this Lifecycle; the component that spawned it still
        counts it as its own. Never switches.

        :raises TypeError: *greenlet* is not weak-referenceable.
        """
        if self._adopted is None:
            self._adopted = weakref.WeakSet()
        self._adopted.add(greenlet)
        _adopters[greenlet] = self
        return greenlet

    def alive(self) -> list[Greenlet]:
        """Return this component's greenlets that have not ended.

        O(greenlets greenworks spawned): for ``stop()``, not for a hot path.
        """
        greenlets = _greenlets.owned_by(self)
        if self._adopted:
            spawned = set(greenlets)
            greenlets.extend(g for g in list(self._adopted) if not g.dead and g not in spawned)
        return greenlets

    def is_own(self, greenlet: Any = None) -> bool:
        """Whether *greenlet* (default: the current one) was spawned or adopted by this component.

        O(1); never switches.
        """
        greenlet = getcurrent() if greenlet is None else greenlet
        if _greenlets.spawned_here(greenlet) and greenlet.owner is self:
            return True
        adopted = self._adopted
        if not adopted:
            return False
        try:
            return greenlet in adopted
        except TypeError:  # not weak-referenceable: never adopted
            return False

    def check_not_own(self, method: str) -> None:
        """Raise `ReentrantStopError` if the calling greenlet is one of this component's.

        :raises ReentrantStopError: naming the component and *method*.
        """
        current = getcurrent()
        if self.is_own(current) and not current.dead:
            raise ReentrantStopError(
                "%s %r: %s() called from its own greenlet %s, which it would wait for;"
                " call it from another greenlet"
                % (self.kind, self.name, method, getattr(current, "name", current))
            )

    def finish(self, greenlets: Iterable[Greenlet], timeout: float | None, what: str = "greenlet") -> bool:
        """Wait up to *timeout* seconds (on the clock) for *greenlets* to end, then kill the rest.

        Blocks. The kill is ``GreenletExit``, waited for up to `KILL_GRACE`
        seconds of real time (a greenlet that catches it and goes on is
        logged and left).

        :return bool: True if all ended by themselves in time.
        """
        greenlets = [g for g in greenlets if not g.dead and g is not getcurrent()]
        if not greenlets:
            return True
        if self.clock.wait(_all_dead(greenlets), timeout):
            return True
        stragglers = [g for g in greenlets if not g.dead]
        self.logger.warning(
            "%s %r: killing %d %s(s) still running after %ss: %s",
            self.kind,
            self.name,
            len(stragglers),
            what,
            timeout,
            ", ".join(getattr(g, "name", repr(g)) for g in stragglers[:10]),
        )
        gevent.killall(stragglers, block=True, timeout=KILL_GRACE)
        survivors = [g for g in stragglers if not g.dead]
        if survivors:
            self.logger.error(
                "%s %r: %d greenlet(s) survived GreenletExit: %s",
                self.kind,
                self.name,
                len(survivors),
                ", ".join(getattr(g, "name", repr(g)) for g in survivors),
            )
        return False

    # -- reporting -------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        """The first keys of every snapshot: component, name, state, started_at."""
        return {
            "component": self.kind,
            "name": self.name,
            "state": self.state.value,
            "started_at": iso(self.started_at),
        }

    def emit(self, kind: type, *values: Any) -> None:
        """Emit ``kind(owner, name, now, *values)`` if anybody subscribed (else free)."""
        if zope.event.subscribers:
            notify(kind(self.owner, self.name, self.clock.now(_UTC), *values))

    def __repr__(self) -> str:
        return "<Lifecycle %s %r %s>" % (self.kind, self.name, self.state.value)
