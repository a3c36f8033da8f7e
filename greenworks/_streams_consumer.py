"""
`StreamConsumer`: a Redis Streams consumer group feeding a Dispatcher.

Import it from :mod:`greenworks.streams`, whose docstring tells the
delivery semantics; this module is private. The consumer composes a
`Lifecycle`, a `Wire` (the commands), a `Health` (outages) and, per run, a
`Ledger` (the held messages and their states), and runs four greenlets,
each named ``greenworks.streams[<name>].<role>``:

- *reader*: ``XREADGROUP`` as many messages as there is room for (the
  backpressure bound: never more held than `capacity`), and dispatch them;
- *keeper*: every ``min(1, claim_idle / 3)`` seconds renews the messages
  held for a third of ``claim_idle`` (so a slow handler or a long backoff is
  never taken over by another consumer), claims with ``XAUTOCLAIM`` what
  dead consumers left idle for ``claim_idle``, reads the group's lag, and
  forgets consumers that hold nothing and have long been gone;
- *retrier*: claims each failed message back with the next delivery count
  once its backoff passed, and dispatches it again;
- *acker*: ``XACK``\\s completed messages in batches: one round trip for all
  that completed while the previous one was on the wire.

A Redis error never ends a greenlet: it backs off (``reconnect_backoff``)
and tries again, and `Health` says the outage once.
"""

import functools
import os
import socket
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import gevent
from greenlet import getcurrent
from zope.interface import implementer

from greenworks import _checks
from greenworks._component import KILL_GRACE, Lifecycle, State, iso
from greenworks._streams_keeper import Keeper
from greenworks._streams_ledger import (
    ACKING,
    CURRENT,
    INTERRUPTED,
    QUEUED,
    READ,
    RUNNING,
    UNSTARTED,
    WAITING,
    Ledger,
    Message,
)
from greenworks._streams_wire import (
    MAX_ERROR_TEXT,
    Health,
    Wire,
    decode_entries,
    import_redis,
    make_client,
    text,
)
from greenworks.backoff import ExponentialBackoff
from greenworks.clock import ClockLike
from greenworks.events import (
    MessageAcked,
    MessageDeadLettered,
    MessageFailed,
    subscribed,
)
from greenworks.exceptions import ReentrantStopError, invalid_argument
from greenworks.interfaces import IStreamConsumer, IWorker

__all__ = ["DEFAULT_WORKERS", "StreamConsumer", "default_consumer_name"]

#: Workers of the consumer's own Dispatcher when none is given.
DEFAULT_WORKERS = 10
#: How long one XREADGROUP waits for new messages (ms); stop() does not wait for it.
READ_BLOCK_MS = 1000


class _Interrupted(Exception):
    """Thrown into a handler still running when ``stop()``'s timeout ran out."""


def default_consumer_name() -> str:
    """``host:pid``: this process's consumer name unless one is given."""
    return "%s:%d" % (socket.gethostname(), os.getpid())


def _check_handlers(handlers: Any) -> dict[str, Callable[..., Any]]:
    if not isinstance(handlers, Mapping) or not handlers:
        raise invalid_argument("handlers", handlers, "a non-empty dict of task name -> callable")
    for key, handler in handlers.items():
        _checks.name("handlers key", key)
        if not callable(handler):
            raise invalid_argument("handlers[%r]" % (key,), handler, "a callable")
    return dict(handlers)


def _check_backoff(argument: str, value: Any) -> Any:
    if not callable(getattr(value, "duration", None)):
        raise invalid_argument(argument, value, "an IBackoff (with duration(attempt))")
    return value


@implementer(IStreamConsumer, IWorker)
class StreamConsumer:
    """Default implementation of `IStreamConsumer` (and of `IWorker`, for ``greenworks run``).

    See :mod:`greenworks.streams` for the parameters, the delivery
    semantics and an example.
    """

    def __init__(
        self,
        url_or_client: Any,
        stream: str,
        group: str,
        handlers: Mapping[str, Callable[..., Any]],
        *,
        dispatcher: Any = None,
        workers: int | None = None,
        consumer: str | None = None,
        batch: int = 100,
        claim_idle: float = 30.0,
        max_deliveries: int = 5,
        backoff: Any = None,
        dead_letter: str | None = None,
        dedupe: Any = None,
        reconnect_backoff: Any = None,
        name: str | None = None,
        clock: ClockLike | None = None,
        logger: Any = None,
    ) -> None:
        self._stream = _checks.name("stream", stream)
        self._group = _checks.name("group", group)
        self._handlers = _check_handlers(handlers)
        self._consumer_given = None if consumer is None else _checks.name("consumer", consumer)
        self._batch = _checks.count("batch", batch, minimum=1)
        self._claim_idle = _checks.seconds("claim_idle", claim_idle, positive=True)
        self._max_deliveries = _checks.count("max_deliveries", max_deliveries, minimum=1)
        self._backoff = _check_backoff(
            "backoff", ExponentialBackoff(1.0, 60.0, 0.5) if backoff is None else backoff
        )
        self._reconnect = _check_backoff(
            "reconnect_backoff",
            ExponentialBackoff(0.1, 5.0, 0.5) if reconnect_backoff is None else reconnect_backoff,
        )
        self._dead = "%s:dead" % stream if dead_letter is None else _checks.name("dead_letter", dead_letter)
        if self._dead == self._stream:
            raise invalid_argument("dead_letter", dead_letter, "a stream other than %r" % stream)
        if dedupe is not None and not (
            callable(getattr(dedupe, "seen", None)) and callable(getattr(dedupe, "remember", None))
        ):
            raise invalid_argument("dedupe", dedupe, "None or an IDedupe such as RedisDedupe(url, ttl)")
        self._dedupe = dedupe
        default_name = "%s/%s" % (stream, group)
        self._life = Lifecycle(
            self,
            "stream_consumer",
            default_name if name is None else name,
            clock,
            logger,
            "greenworks.streams",
        )
        self._client = make_client(url_or_client)
        self._wire = Wire(self._client, self._stream, self._group, self._dead)
        self._redis_error = import_redis().RedisError
        self._owns = dispatcher is None
        if dispatcher is None:
            from greenworks.dispatcher import Dispatcher

            workers = DEFAULT_WORKERS if workers is None else _checks.count("workers", workers, minimum=1)
            # Two batches of buffer: the next batch is read while the last one runs.
            dispatcher = Dispatcher(
                2 * self._batch, 1, workers, task_timeout=None, name="streams[%s]" % self.name
            )
        elif workers is not None:
            raise invalid_argument("workers", workers, "None when a dispatcher is given (size that one)")
        elif not (callable(getattr(dispatcher, "dispatch", None)) and hasattr(dispatcher, "max_buffered")):
            raise invalid_argument("dispatcher", dispatcher, "None or a greenworks Dispatcher")
        self._dispatcher = dispatcher
        self._monotonic = self._life.clock.monotonic
        self._consumer = self._consumer_given or default_consumer_name()
        self._greenlets: dict[str, gevent.Greenlet] = {}
        self._new_run()
        self._clean: bool | None = None

    # -- properties --------------------------------------------------------------

    name = property(lambda self: self._life.name, doc="See `IComponent.name`.")
    state = property(lambda self: self._life.state, doc="See `IComponent.state`.")
    stream = property(lambda self: self._stream, doc="See `IStreamConsumer.stream`.")
    group = property(lambda self: self._group, doc="See `IStreamConsumer.group`.")
    consumer = property(lambda self: self._consumer, doc="See `IStreamConsumer.consumer`.")
    dead_letter = property(lambda self: self._dead, doc="See `IStreamConsumer.dead_letter`.")
    dispatcher = property(lambda self: self._dispatcher, doc="See `IStreamConsumer.dispatcher`.")

    @property
    def capacity(self) -> int:
        """See `IStreamConsumer.capacity` (read from the dispatcher each time: it may be resized)."""
        return int(self._dispatcher.max_buffered + self._dispatcher.max_workers)

    # -- lifecycle ---------------------------------------------------------------

    def _new_run(self) -> None:
        """Fresh books for a run: a ledger, a health record and a keeper."""
        self._ledger = Ledger(self._life.clock)
        self._health = Health(self._life)
        self._keeper = Keeper(
            self._life,
            self._wire,
            self._ledger,
            self._health,
            self._consumer,
            self._claim_idle,
            self._batch,
            lambda: self.capacity,
            self._message,
            self._enqueue,
            self._reconnect,
            self._redis_error,
        )

    def start(self) -> "StreamConsumer":
        """See `IComponent.start`. Never blocks; the reader creates the group if it is missing."""
        life = self._life
        if life.running:
            return self
        if life.state is State.STOPPING:
            life.wait_stopped()
        self._consumer = self._consumer_given or default_consumer_name()
        self._new_run()
        if self._owns:
            self._dispatcher.run()
        elif getattr(getattr(self._dispatcher, "status", None), "name", None) == "STOPPED":
            life.logger.warning(
                "stream consumer %r: its dispatcher %r is not running;"
                " messages wait until its owner starts it",
                life.name,
                getattr(self._dispatcher, "name", self._dispatcher),
            )
        life.started()
        prefix = "greenworks.streams[%s]." % life.name
        for role, loop in (
            ("reader", self._read_loop),
            ("keeper", self._keeper.keep_loop),
            ("retrier", self._keeper.retry_loop),
            ("acker", self._ack_loop),
        ):
            self._greenlets[role] = life.spawn(prefix + role, loop)
        life.logger.info(
            "stream consumer %r: reading %s as %s in group %s (capacity %d)",
            life.name,
            self._stream,
            self._consumer,
            self._group,
            self.capacity,
        )
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """See `IComponent.stop`: stop reading, finish what runs, hand the rest back. Blocks.

        In order: the reader, keeper and retrier are killed (a read cut
        short is handed back below); the messages not started yet and those
        waiting for a retry are handed back: their idle time is set to
        ``claim_idle``, so the next ``XAUTOCLAIM`` of any consumer takes
        them at once, and a delivery that never started is not counted.
        Running handlers then get *timeout* seconds (None: as long as they
        take) to finish and be acked. Handlers still running after that are
        interrupted (an exception is thrown into them), their messages are
        handed back as well, and the result is False. An owned dispatcher
        is stopped last; a given one is left running.

        :raises ReentrantStopError: from a handler of this consumer or one of its greenlets.
        """
        timeout = _checks.seconds("timeout", timeout, none=True)
        life = self._life
        life.check_not_own("stop")
        current = CURRENT.get()
        if current is not None and self._ledger.held.get(current.id) is current:
            raise ReentrantStopError(
                "stream consumer %r: stop() called from the handler of %s, which it would wait for;"
                " call it from another greenlet" % (life.name, current.id)
            )
        if life.state is State.NEW or life.state is State.STOPPED:
            return True if self._clean is None else self._clean
        if life.state is State.STOPPING:
            life.wait_stopped()
            return bool(self._clean)
        life.state = State.STOPPING
        ledger, clock = self._ledger, life.clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        clean = False
        try:
            side = [self._greenlets.pop(role) for role in ("reader", "keeper", "retrier")]
            gevent.killall(side, block=True, timeout=KILL_GRACE)
            self._hand_back_orphans()
            self._hand_back(ledger.in_state(READ, QUEUED, WAITING))
            clean = ledger.wait_quiet(deadline)
            if not clean:
                for message in ledger.in_state(RUNNING):
                    if isinstance(message._greenlet, gevent.Greenlet):
                        message._greenlet.kill(
                            _Interrupted("stream consumer %r stopping" % life.name), block=False
                        )
                ledger.wait_quiet(clock.monotonic() + KILL_GRACE)
            self._hand_back(ledger.in_state(READ, QUEUED, RUNNING, WAITING, INTERRUPTED))
            unacked = ledger.in_state(ACKING)
            if unacked:
                life.logger.warning(
                    "stream consumer %r: %d completed message(s) could not be acked; they will run again",
                    life.name,
                    len(unacked),
                )
            clean = self._stop_dispatcher(deadline) and clean and not unacked
        finally:
            gevent.killall(list(self._greenlets.values()), block=True, timeout=KILL_GRACE)
            self._greenlets.clear()
            self._clean = clean
            life.stopped(clean)
            life.logger.info("stream consumer %r: stopped (%s)", life.name, "clean" if clean else "not clean")
        return clean

    def _stop_dispatcher(self, deadline: float | None) -> bool:
        if not self._owns:
            return True
        remaining = None if deadline is None else max(0.0, deadline - self._life.clock.monotonic())
        quitting = self._life.spawn("greenworks.streams[%s].stop" % self.name, self._dispatcher.quit)
        quitting.join(timeout=remaining)
        if quitting.dead:
            return True
        # Handlers that ignored the interruption: kill the workers running them.
        gevent.killall([m._greenlet for m in self._ledger.held.values() if m._greenlet], block=True)
        quitting.join()
        return False

    def __enter__(self) -> "StreamConsumer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def run(self, ctx: Any) -> None:
        """See `IStreamConsumer.run`; ``greenworks run`` and ``runtime.add_worker`` call this."""
        self.start()
        try:
            ctx.wait()
        finally:
            self.stop()

    # -- one delivery ------------------------------------------------------------

    def _message(self, message_id: str, fields: Any, delivery_count: int) -> Message:
        """A `Message` of one entry claimed or adopted by the keeper."""
        return self._messages(decode_entries([(message_id, fields)]), delivery_count)[0]

    def _messages(self, decoded: list[tuple[Any, ...]], delivery_count: int = 1) -> list[Message]:
        """`Message` objects of entries decoded by the wire, all received now."""
        stream, group, consumer, now = self._stream, self._group, self._consumer, self._monotonic()
        messages = []
        for message_id, task, args, kwargs, problem, fields in decoded:
            message = Message(message_id, task, args, kwargs, delivery_count, stream, group, consumer, now)
            message._raw = fields
            message._problem = problem
            messages.append(message)
        return messages

    def _enqueue(self, messages: list[Message]) -> None:
        dispatch, execute = self._dispatcher.dispatch, self._execute
        for message in messages:
            if message._state == READ or message._state == WAITING:
                message._state = QUEUED
                # block=True: a shared dispatcher full of other work holds the reader back.
                dispatch(functools.partial(execute, message), True)

    def _execute(self, message: Message) -> None:
        """The Dispatcher task of one delivery: run the handler, then ack, retry or dead-letter."""
        if message._state != QUEUED:
            return  # handed back, or taken over by another consumer, before it started
        message._state = RUNNING
        message._greenlet = getcurrent()
        try:
            handler = None
            if message._problem is None and message.delivery_count == 1:  # the common case, first
                handler = self._handlers.get(message.task)
            if handler is None:
                handler = self._prepare(message)
                if handler is None:
                    return
            token = CURRENT.set(message)
            try:
                handler(*message.args, **message.kwargs)
            except _Interrupted:
                message._state = INTERRUPTED
                return
            except (Exception, gevent.Timeout) as exc:  # a Timeout: the dispatcher's task_timeout, or its own
                if message._state == RUNNING:
                    self._failed(message, exc)
                return
            finally:
                CURRENT.reset(token)
            if message._state == RUNNING:  # else stop() handed it back meanwhile
                self._ledger.complete(message)
        finally:
            message._greenlet = None
            if message._state == RUNNING or message._state == INTERRUPTED:
                # Killed, interrupted, or gave up during an outage: stop() hands it back.
                message._state = INTERRUPTED
                self._ledger.changed.set()

    def _prepare(self, message: Message) -> Callable[..., Any] | None:
        """Everything but a well-formed first delivery: limits, unknown tasks, dedupe.

        :return: the handler to run, or None when the message was dealt with here.
        """
        problem, deliveries = message._problem, message.delivery_count
        if problem is None and deliveries > self._max_deliveries:
            deliveries -= 1
            problem = (
                "delivered %d times, more than max_deliveries=%d: its last delivery never finished"
                " (its consumer died or was stopped); last error: %s"
                % (
                    message.delivery_count,
                    self._max_deliveries,
                    self._lookup(self._wire.last_error, message.id),
                )
            )
        handler = self._handlers.get(message.task)
        if problem is None and handler is None:
            problem = "unknown task %r: no handler of that name (handlers: %s)" % (
                message.task,
                ", ".join(sorted(self._handlers)),
            )
        if problem is not None:
            self._dead_letter(message, problem, "", deliveries)
            return None
        if self._dedupe is not None and deliveries > 1 and self._lookup(self._dedupe.seen, message):
            # Only a redelivery can have completed before.
            self._ledger.counts["skipped_duplicates"] += 1
            message._skipped = True
            self._ledger.complete(message)
            return None
        return handler

    def _lookup(self, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)``, or None on a Redis error: for answers a delivery can do without."""
        try:
            return call(*args)
        except self._redis_error as exc:
            self._health.failed("lookup", exc)
            return None

    def _failed(self, message: Message, exc: BaseException) -> None:
        self._ledger.counts["failed"] += 1
        life, count = self._life, message.delivery_count
        error = "%s: %s" % (type(exc).__name__, exc)
        if count >= self._max_deliveries:
            life.emit(MessageFailed, message.id, message.task, count, exc, None)
            stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self._dead_letter(message, error, stack, count)
            return
        delay = float(self._backoff.duration(count))
        # Kept in Redis in case this consumer dies before the next delivery ends.
        self._lookup(self._wire.record_error, message.id, error)
        life.logger.warning(
            "stream consumer %r: %s %s failed (delivery %d of %d), retrying in %.3gs: %s",
            life.name,
            message.task,
            message.id,
            count,
            self._max_deliveries,
            delay,
            error,
        )
        life.emit(MessageFailed, message.id, message.task, count, exc, delay)
        self._ledger.schedule(message, delay)

    def _dead_letter(self, message: Message, error: str, stack: str, deliveries: int) -> None:
        raw = message._raw or {}
        fields = {
            "id": message.id,
            "task": text(raw.get(b"task", raw.get("task", message.task))),
            "payload": text(raw.get(b"payload", raw.get("payload", ""))),
            "error": error[:MAX_ERROR_TEXT],
            "traceback": stack[-MAX_ERROR_TEXT:],
            "deliveries": deliveries,
            "stream": self._stream,
            "group": self._group,
            "consumer": self._consumer,
        }
        failures = 0
        while True:
            try:
                dead_id = self._wire.dead_letter_message(self._consumer, message.id, fields)
                break
            except self._redis_error as exc:
                self._health.failed("dead-letter", exc)
                if not self._life.running:
                    return  # still pending: whoever delivers it next dead-letters it
                failures += 1
                self._life.clock.sleep(self._reconnect.duration(min(failures, 30)))
        self._health.ok()
        if dead_id is not None:
            self._ledger.counts["dead_lettered"] += 1
            self._life.logger.warning(
                "stream consumer %r: %s %s moved to %s after %d deliveries: %s",
                self._life.name,
                message.task,
                message.id,
                self._dead,
                deliveries,
                error,
            )
            self._life.emit(MessageDeadLettered, message.id, message.task, deliveries, error, dead_id)
        self._ledger.release([message])

    def _hand_back(self, messages: list[Message]) -> None:
        """Give *messages* back to the group, claimable at once by any consumer (stop only)."""
        if not messages:
            return
        # A delivery that never started does not count as a try.
        pairs = [(m.id, m.delivery_count - 1 if m._state in UNSTARTED else None) for m in messages]
        self._ledger.release(messages)
        try:
            self._wire.touch(self._consumer, pairs, int(self._claim_idle * 1000))
        except self._redis_error as exc:
            self._health.failed("hand back", exc)  # they stay pending: claimed after claim_idle
            return
        self._ledger.counts["handed_back"] += len(pairs)

    def _hand_back_orphans(self) -> None:
        """Hand back what a read cut short by stop() left pending to this consumer unseen."""
        held = self._ledger.held
        try:
            mine = self._wire.pending_of(self._consumer, self.capacity + len(held) + self._batch)
            orphans = [(i, max(0, count - 1)) for i, count in mine if i not in held]
            if orphans:
                self._wire.touch(self._consumer, orphans, int(self._claim_idle * 1000))
                self._ledger.counts["handed_back"] += len(orphans)
        except self._redis_error as exc:
            self._health.failed("hand back", exc)

    # -- the greenlets -----------------------------------------------------------

    def _backing_off(self, where: str, exc: BaseException, failures: int) -> None:
        self._health.failed(where, exc)
        self._life.clock.sleep(self._reconnect.duration(min(failures, 30)))

    def _read_loop(self) -> None:
        wire, ledger, health = self._wire, self._ledger, self._health
        failures = 0
        while True:
            try:
                if health.group_lost:
                    if wire.ensure_group():
                        self._life.logger.info(
                            "stream consumer %r: created group %s on %s", self.name, self._group, self._stream
                        )
                    health.group_lost = False
                capacity = self.capacity
                # Wait for half a batch of room, not one slot: fewer, fuller reads.
                room = ledger.wait_room(capacity, max(1, min(self._batch, capacity) // 2))
                entries = wire.read(self._consumer, min(self._batch, room), READ_BLOCK_MS)
            except self._redis_error as exc:
                failures += 1
                self._backing_off("read", exc, failures)
                continue
            failures = 0
            health.ok()
            if entries:
                messages = self._messages(entries)
                ledger.add(messages)
                self._enqueue(messages)

    def _ack_loop(self) -> None:
        ledger, clock, dedupe = self._ledger, self._life.clock, self._dedupe
        while True:
            clock.wait(ledger.ack_wake)
            ledger.ack_wake.clear()
            failures = 0
            while ledger.acks:
                batch = ledger.take_acks()
                while True:
                    try:
                        if dedupe is not None:
                            fresh = [m for m in batch if not m._skipped]
                            if fresh:
                                dedupe.remember(fresh)
                        self._wire.ack([m.id for m in batch], [m.id for m in batch if m.delivery_count > 1])
                        break
                    except Exception as exc:  # Redis, or a dedupe of another kind
                        failures += 1
                        self._backing_off("ack", exc, failures)
                self._health.ok()
                ledger.counts["acked"] += len(batch)
                ledger.release(batch)
                if subscribed():
                    for message in batch:
                        self._life.emit(MessageAcked, message.id, message.task, message.delivery_count)

    # -- introspection -----------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """See `IStreamConsumer.stats`; ``lag`` and ``pending`` are the keeper's last reading."""
        stats = self._ledger.stats()
        stats["outages"] = self._health.outages
        stats["lag"] = self._keeper.info["lag"]
        stats["pending"] = self._keeper.info["pending"]
        return stats

    def snapshot(self) -> dict[str, Any]:
        """See `IComponent.snapshot`. Never blocks: the Redis figures are the keeper's last reading."""
        snap = self._life.header()
        snap.update(
            {
                "stream": self._stream,
                "group": self._group,
                "consumer": self._consumer,
                "dead_letter": self._dead,
                "dispatcher": getattr(self._dispatcher, "name", None),
                "owns_dispatcher": self._owns,
                "capacity": self.capacity,
                "batch": self._batch,
                "claim_idle": self._claim_idle,
                "max_deliveries": self._max_deliveries,
            }
        )
        snap.update(self.stats())
        snap["lag_exact"] = self._keeper.info["lag_exact"]
        snap["info_at"] = iso(self._keeper.info["at"])
        snap["oldest_held_seconds"] = self._ledger.oldest()
        snap["redis"] = {
            "connected": self._health.since is None,
            "outage_since": iso(self._health.since),
            "last_error": self._health.last_error,
        }
        return snap

    def __repr__(self) -> str:
        return "<greenworks.streams.StreamConsumer %r %s held=%d>" % (
            self.name,
            self._life.state.value,
            len(self._ledger),
        )
