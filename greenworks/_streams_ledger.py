"""
What a stream consumer holds: its messages, their states, and the bound on them.

Import `Message` and `current_message` from :mod:`greenworks.streams`; this
module is private. A `Ledger` is the consumer's in-memory book of every
message it read and has not yet acked, dead-lettered or handed back
("held"), each in one state::

    READ -> QUEUED -> RUNNING -> ACKING -> (acked: released)
                         |-> WAITING (failed; due again after its backoff) -> QUEUED
                         |-> INTERRUPTED (stop() ran out of time) -> handed back
                         |-> dead-lettered (released)

plus the queue of completed messages the acker sends, the heap of messages
waiting for their retry, the counters, and the events that wake the reader
(room freed), the acker (something completed), the retrier (a retry
scheduled) and ``stop()`` (a message left RUNNING or ACKING). Nothing here
does I/O; every method is quick and never switches, except the ``wait_*``
ones, which block on the ledger's clock.
"""

import contextvars
import heapq
from typing import Any

from gevent.event import Event
from zope.interface import implementer

from greenworks.clock import ClockLike
from greenworks.exceptions import NoCurrentMessageError
from greenworks.interfaces import IMessage

__all__ = ["Ledger", "Message", "current_message"]

READ, QUEUED, RUNNING, WAITING, ACKING, INTERRUPTED, GONE = range(7)
#: States of a message whose current delivery has not started: it does not count as a try.
UNSTARTED = (READ, QUEUED)

CURRENT: contextvars.ContextVar["Message | None"] = contextvars.ContextVar(
    "greenworks.streams.message", default=None
)

_COUNTERS = (
    "acked",
    "failed",
    "retried",
    "dead_lettered",
    "reclaimed",
    "handed_back",
    "skipped_duplicates",
    "lost",
    "outages",
)


def current_message() -> "Message":
    """Return the `Message` whose handler is running in this greenlet.

    Each greenlet has its own value (a context variable), so it is right
    in every handler however many run at once; a greenlet a handler spawns
    does not inherit it.

    :raises NoCurrentMessageError: outside a handler (a ``LookupError``).
    """
    message = CURRENT.get()
    if message is None:
        raise NoCurrentMessageError()
    return message


@implementer(IMessage)
class Message:
    """Default implementation of `IMessage`.

    The attributes are plain, for speed; treat them as read-only. The
    consumer keeps its bookkeeping in the underscored slots.
    """

    __slots__ = (
        "id",
        "task",
        "args",
        "kwargs",
        "delivery_count",
        "stream",
        "group",
        "consumer",
        "_raw",
        "_problem",
        "_state",
        "_touched",
        "_since",
        "_greenlet",
        "_skipped",
    )

    def __init__(
        self,
        message_id: str,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        delivery_count: int,
        stream: str,
        group: str,
        consumer: str,
        now: float = 0.0,
    ) -> None:
        self.id = message_id
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.delivery_count = delivery_count
        self.stream = stream
        self.group = group
        self.consumer = consumer
        #: The entry's fields as read (for the dead letter), and why it cannot run, if it cannot.
        self._raw: Any = None
        self._problem: str | None = None
        self._state = READ
        #: When its idle time in Redis was last reset, and when this consumer got it (monotonic).
        self._touched = self._since = now
        self._greenlet: Any = None
        #: Completed without running: the dedupe had seen it.
        self._skipped = False

    def __repr__(self) -> str:
        return "<greenworks.streams.Message %s %s delivery %d>" % (self.id, self.task, self.delivery_count)


class Ledger:
    """The held messages of one consumer run; see the module docstring.

    :param clock: the consumer's `IClock` (for the waits and the retry due times).
    """

    __slots__ = (
        "clock",
        "held",
        "acks",
        "counts",
        "room",
        "changed",
        "ack_wake",
        "retry_wake",
        "_retries",
        "_seq",
    )

    def __init__(self, clock: ClockLike) -> None:
        self.clock = clock
        self.held: dict[str, Message] = {}
        #: Completed messages the acker has yet to send.
        self.acks: list[Message] = []
        self.counts = dict.fromkeys(_COUNTERS, 0)
        self.room = Event()
        self.changed = Event()
        self.ack_wake = Event()
        self.retry_wake = Event()
        self._retries: list[tuple[float, int, Message]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self.held)

    def add(self, messages: list[Message]) -> None:
        """Hold *messages* (before they are dispatched, so a stop meanwhile still sees them)."""
        held = self.held
        for message in messages:
            held[message.id] = message

    def release(self, messages: list[Message]) -> None:
        """Stop holding *messages* (acked, dead-lettered, handed back, lost or taken over)."""
        held = self.held
        for message in messages:
            message._state = GONE
            held.pop(message.id, None)
        self.room.set()
        self.changed.set()

    def complete(self, message: Message) -> None:
        """Queue *message* for the acker."""
        message._state = ACKING
        self.acks.append(message)
        self.ack_wake.set()

    def take_acks(self) -> list[Message]:
        """Return and forget the queued completions."""
        batch, self.acks = self.acks, []
        return batch

    def in_state(self, *states: int) -> list[Message]:
        """The held messages in any of *states*."""
        return [m for m in self.held.values() if m._state in states]

    # -- retries ---------------------------------------------------------------

    def schedule(self, message: Message, delay: float) -> None:
        """Mark *message* WAITING and due again *delay* seconds from now."""
        message._state = WAITING
        self._seq += 1
        heapq.heappush(self._retries, (self.clock.monotonic() + delay, self._seq, message))
        self.retry_wake.set()
        self.changed.set()

    def next_due(self) -> float | None:
        """Seconds until the first retry is due (<= 0: now), or None if none waits."""
        retries = self._retries
        while retries and retries[0][2]._state != WAITING:
            heapq.heappop(retries)  # released or handed back meanwhile
        return None if not retries else retries[0][0] - self.clock.monotonic()

    def pop_due(self) -> list[Message]:
        """Return the WAITING messages whose retry is due, in due order."""
        now = self.clock.monotonic()
        retries = self._retries
        due = []
        while retries and retries[0][0] <= now:
            message = heapq.heappop(retries)[2]
            if message._state == WAITING:
                due.append(message)
        return due

    # -- waiting ---------------------------------------------------------------

    def wait_room(self, capacity: int, wanted: int = 1) -> int:
        """Block until at least *wanted* more messages fit under *capacity*; return the room.

        Never blocks while nothing is held (then any room will do).
        """
        held = self.held
        while capacity - len(held) < wanted and (held or capacity <= 0):
            self.room.clear()
            if capacity - len(held) < wanted and (held or capacity <= 0):  # re-checked: no lost wake-up
                self.clock.wait(self.room)
        return capacity - len(held)

    def wait_quiet(self, deadline: float | None) -> bool:
        """Block until no held message is RUNNING or ACKING; False once the monotonic *deadline* passed."""
        clock = self.clock
        while any(m._state == RUNNING or m._state == ACKING for m in self.held.values()):
            self.changed.clear()
            remaining = None if deadline is None else deadline - clock.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            clock.wait(self.changed, remaining)
        return True

    # -- reporting -------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Held messages by state, then the counters."""
        by_state = [0] * 7
        for message in self.held.values():
            by_state[message._state] += 1
        stats: dict[str, Any] = {
            "held": len(self.held),
            "in_flight": by_state[RUNNING],
            "queued": by_state[READ] + by_state[QUEUED],
            "waiting_retry": by_state[WAITING],
            "acking": by_state[ACKING],
        }
        stats.update(self.counts)
        return stats

    def oldest(self) -> float | None:
        """Seconds the longest-held message has been held (read, claimed or retried), or None."""
        now = self.clock.monotonic()
        return max((now - m._since for m in self.held.values()), default=None)
