"""
Keeping a stream consumer's messages its own, and taking over those of dead consumers.

Private to :mod:`greenworks.streams`. A `Keeper` runs two of a consumer's
greenlets (see `greenworks._streams_consumer`):

- :meth:`Keeper.keep_loop`, every ``min(1, claim_idle / 3)`` seconds:
  renews every held message whose idle time in Redis reached a third of
  ``claim_idle`` (so a slow handler, or a message waiting out its backoff,
  is never claimed by another consumer while this one lives); claims with
  ``XAUTOCLAIM`` what other consumers left idle for ``claim_idle`` (they
  died, or were stopped and handed it back), as far as there is room; reads
  the group's lag and pending count; and, rarely, forgets consumers that
  hold nothing and have not been seen for ``max(10 * claim_idle, 600)`` s.
- :meth:`Keeper.retry_loop`: claims each failed message back with the next
  delivery count once its backoff passed (only while this consumer still
  owns it), and dispatches it again.

Both back off and try again on a Redis error; `Health` says the outage.
"""

from collections.abc import Callable
from typing import Any

from greenworks._streams_ledger import UNSTARTED, WAITING, Ledger, Message
from greenworks.events import MessagesLost, MessagesReclaimed

__all__ = ["KEEPER_PERIOD", "PRUNE_AFTER", "Keeper"]

#: The keeper's period is ``min(KEEPER_PERIOD, claim_idle / 3)`` seconds.
KEEPER_PERIOD = 1.0
#: Consumers that hold nothing are forgotten after ``max(10 * claim_idle, PRUNE_AFTER)`` seconds idle.
PRUNE_AFTER = 600.0


class Keeper:
    """The ownership side of one consumer run; every collaborator is given, none is looked up.

    :param life: the consumer's `Lifecycle`.
    :param wire: its `Wire`.
    :param Ledger ledger: this run's ledger.
    :param health: its `Health`.
    :param str consumer: its consumer name.
    :param float claim_idle: seconds after which an idle message is taken over.
    :param int batch: the most messages claimed at once.
    :param capacity: ``capacity()`` -> the consumer's bound on held messages.
    :param make_message: ``make_message(id, fields, delivery_count)`` -> a `Message`.
    :param enqueue: ``enqueue(messages)`` dispatches them.
    :param reconnect: the `IBackoff` between attempts while Redis fails.
    :param redis_error: ``redis.RedisError``.
    """

    def __init__(
        self,
        life: Any,
        wire: Any,
        ledger: Ledger,
        health: Any,
        consumer: str,
        claim_idle: float,
        batch: int,
        capacity: Callable[[], int],
        make_message: Callable[[str, Any, int], Message],
        enqueue: Callable[[list[Message]], None],
        reconnect: Any,
        redis_error: type[Exception],
    ) -> None:
        self.life = life
        self.wire = wire
        self.ledger = ledger
        self.health = health
        self.consumer = consumer
        self.claim_idle = claim_idle
        self.batch = batch
        self.capacity = capacity
        self.make_message = make_message
        self.enqueue = enqueue
        self.reconnect = reconnect
        self.redis_error = redis_error
        #: The last reading of the group: lag (exact or not), pending, when (POSIX time).
        self.info: dict[str, Any] = {"lag": None, "lag_exact": False, "pending": None, "at": None}
        self._cursor = "0-0"
        self._pruned_at: float | None = None
        #: The first adoption is of what an earlier process of the same name left (which may have run).
        self._first_adoption = True

    def _backing_off(self, where: str, exc: BaseException, failures: int) -> None:
        self.health.failed(where, exc)
        self.life.clock.sleep(self.reconnect.duration(min(failures, 30)))

    def _forget(self, ids: list[str]) -> None:
        try:
            self.wire.forget_errors(ids)
        except self.redis_error as exc:
            self.health.failed("forget errors", exc)

    def retry_loop(self) -> None:
        ledger, clock = self.ledger, self.life.clock
        failures = 0
        while True:
            ledger.retry_wake.clear()
            wait = ledger.next_due()
            if wait is None or wait > 0:
                clock.wait(ledger.retry_wake, wait)
                continue
            due = ledger.pop_due()
            try:
                kept, gone = self.wire.touch(self.consumer, [(m.id, m.delivery_count + 1) for m in due])
            except self.redis_error as exc:
                for message in due:
                    ledger.schedule(message, 0.0)
                failures += 1
                self._backing_off("retry", exc, failures)
                continue
            failures = 0
            self.health.ok()
            again = [m for m in due if m.id in kept]
            now = clock.monotonic()
            for message in again:
                message.delivery_count += 1
                message._touched = now
            ledger.counts["retried"] += len(again)
            self._lost([m for m in due if m.id in gone])
            ledger.release([m for m in due if m.id not in kept and m.id not in gone])
            self.enqueue(again)

    def keep_loop(self) -> None:
        clock = self.life.clock
        period = min(KEEPER_PERIOD, self.claim_idle / 3.0)
        failures = 0
        while True:
            try:
                self._renew()
                if not self.health.group_lost:
                    if self.health.recovered:
                        self._adopt()
                    self._claim()
                    self._refresh_info()
                    self._prune()
            except self.redis_error as exc:
                failures += 1
                self._backing_off("keeper", exc, failures)
                continue
            failures = 0
            self.health.ok()
            clock.sleep(period)

    def _renew(self) -> None:
        """Reset the idle time of messages held a third of ``claim_idle``, so nobody claims them."""
        ledger = self.ledger
        now = ledger.clock.monotonic()
        stale = now - self.claim_idle / 3.0
        old = [m for m in ledger.held.values() if m._touched <= stale]
        if not old:
            return
        kept, gone = self.wire.touch(self.consumer, [(m.id, None) for m in old])
        for message in old:
            message._touched = now
        self._lost([m for m in old if m.id in gone])
        taken = [m for m in old if m.id not in kept and m.id not in gone]
        if taken:
            self.life.logger.warning(
                "stream consumer %r: another consumer claimed %d of its message(s)"
                " (not renewed within claim_idle=%ss: a blocked hub or an outage?)",
                self.life.name,
                len(taken),
                self.claim_idle,
            )
            # Not started yet: the new owner runs them. Running ones finish and are acked (twice run).
            ledger.release([m for m in taken if m._state in UNSTARTED or m._state == WAITING])

    def _adopt(self) -> None:
        """Take up what is pending to this consumer but not held: replies lost in an outage,
        or what an earlier process of the same name left. Not counted as a try after an
        outage (it never reached a handler); counted at start (the earlier process may have run it).
        """
        ledger = self.ledger
        room = self.capacity() - len(ledger)
        if room <= 0:
            return
        asked = room + len(ledger)
        mine = self.wire.pending_of(self.consumer, asked)
        orphans = [message_id for message_id, _count in mine if message_id not in ledger.held]
        adopted = self.wire.adopt(self.consumer, orphans[:room], self._first_adoption)
        self._first_adoption = False
        if len(orphans) <= room and len(mine) < asked:
            self.health.recovered = False  # all seen; else again at the next pass
        fresh = [
            self.make_message(message_id, fields, count) for message_id, fields, count in adopted if fields
        ]
        if fresh:
            ledger.add(fresh)
            self.life.logger.info(
                "stream consumer %r: took up %d message(s) pending to it from before",
                self.life.name,
                len(fresh),
            )
            self.enqueue(fresh)

    def _claim(self) -> None:
        """``XAUTOCLAIM`` what was left idle for ``claim_idle`` (its consumer died), as room allows."""
        ledger = self.ledger
        room = min(self.batch, self.capacity() - len(ledger))
        if room <= 0:
            return
        cursor, claimed, deleted = self.wire.claim(
            self.consumer, int(self.claim_idle * 1000), self._cursor, room
        )
        self._cursor = cursor
        if deleted:
            self._report_lost(deleted)
        fresh = []
        for message_id, fields, count in claimed:
            known = ledger.held.get(message_id)
            if known is not None:  # ours, left unrenewed through an outage
                known.delivery_count = max(known.delivery_count, count)
                known._touched = ledger.clock.monotonic()
            elif fields is None:
                self._report_lost([message_id])
            else:
                fresh.append(self.make_message(message_id, fields, count))
        if fresh:
            ledger.add(fresh)
            ledger.counts["reclaimed"] += len(fresh)
            self.life.logger.info(
                "stream consumer %r: claimed %d message(s) idle for more than %ss",
                self.life.name,
                len(fresh),
                self.claim_idle,
            )
            self.life.emit(MessagesReclaimed, tuple(m.id for m in fresh))
            self.enqueue(fresh)

    def _lost(self, messages: list[Message]) -> None:
        if messages:
            self.ledger.release(messages)
            self._report_lost([m.id for m in messages])

    def _report_lost(self, ids: list[str]) -> None:
        self.ledger.counts["lost"] += len(ids)
        self.life.logger.warning(
            "stream consumer %r: %d pending message(s) were deleted from %s before they completed"
            " (MAXLEN shorter than the backlog, or XDEL): %s",
            self.life.name,
            len(ids),
            self.wire.stream,
            ", ".join(ids[:10]),
        )
        self.life.emit(MessagesLost, tuple(ids))
        self._forget(ids)

    def _refresh_info(self) -> None:
        info = self.wire.group_info()
        if info is None:
            return
        lag, exact = info.get("lag"), True
        if lag is None and info.get("entries-read") is not None:
            # Redis 7 leaves lag unset after some deletions; XLEN - entries-read is close.
            lag, exact = max(0, self.wire.length() - int(info["entries-read"])), False
        self.info = {
            "lag": None if lag is None else int(lag),
            "lag_exact": exact and lag is not None,
            "pending": int(info.get("pending") or 0),
            "at": self.life.clock.time(),
        }

    def _prune(self) -> None:
        idle = max(self.claim_idle * 10, PRUNE_AFTER)
        now = self.life.clock.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < idle / 10:
            return
        self._pruned_at = now
        removed = self.wire.prune(self.consumer, int(idle * 1000))
        if removed:
            self.life.logger.info(
                "stream consumer %r: forgot %d consumer(s) that held nothing for %ss: %s",
                self.life.name,
                len(removed),
                idle,
                ", ".join(removed[:10]),
            )
