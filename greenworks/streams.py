"""
Durable work across hosts: a Dispatcher fed by a Redis Streams consumer group.

A request handler sends work; any number of processes, on any number of
hosts, run it on their in-process elastic `Dispatcher`, and the work
survives a deploy or a crashed worker, because it lives in Redis until it
is done::

    from greenworks.streams import StreamConsumer, StreamProducer, current_message

    producer = StreamProducer("redis://redis:6379/0", "jobs")
    producer.send("resize", "photo-17.jpg", width=640)          # -> "1718000000000-0"

    def resize(path, width):
        message = current_message()       # .id, .delivery_count, .args, ...
        ...

    consumer = StreamConsumer("redis://redis:6379/0", "jobs", "resizers", {"resize": resize})
    with consumer:                        # or greenworks run / greenworks.gunicorn
        ...

greenworks does not become a broker: Redis (5.0+, 6.2+ for ``XAUTOCLAIM``,
7.0+ for an exact lag) keeps the messages, their owners and their delivery
counts, and every guarantee below is one that Redis's consumer groups give.
It needs redis-py (``pip install 'greenworks[redis]'``).

Delivery: at least once
-----------------------

A message is acked (``XACK``) only after its handler returned. So a handler
runs at least once per message, and sometimes more than once:

- its consumer died (SIGKILL, OOM, a lost host) after the handler ran and
  before the ack reached Redis: ``claim_idle`` seconds later another
  consumer claims the message and runs it again;
- the process was frozen longer than ``claim_idle`` (a blocked hub, a
  stopped container): its messages were claimed by another consumer
  meanwhile, and both finish them;
- the ack could not be sent before ``stop()`` gave up (Redis down).

Make handlers idempotent, or let them tell: `current_message()` gives the
message's ``id`` (the same on every delivery) and its ``delivery_count``
(1 on the first delivery; greater means it may have run before). Pass
``dedupe=RedisDedupe(url, ttl)`` and a redelivered message whose handler
completed within *ttl* is acked without running again (the completion is
recorded just before the ack, so a crash between the two is covered; a
crash while the handler runs is not: nothing completed).

Nothing is lost silently: a message leaves the stream's pending list only
by an ack after success, by the dead-letter move, or by trimming (see
*maxlen* below, the one way to lose messages, which the consumer reports).

Failures, retries and dead letters
----------------------------------

A handler that raises leaves its message pending: it is owned by the same
consumer and runs again after ``backoff.duration(delivery_count)`` seconds
(default ``ExponentialBackoff(1, 60, jitter_proportion=0.5)``), with the
delivery count raised by one in Redis first (``XCLAIM ... RETRYCOUNT``), so
a crash meanwhile still counts it. The message keeps its slot while it
waits (it is held and un-acked). When delivery number ``max_deliveries``
fails too, the message is moved, in one atomic step, to the dead-letter
stream ``<stream>:dead`` with its error, traceback and number of deliveries,
and acked. A message for a task nobody handles, or one that is not a
greenworks message at all, is dead-lettered at once: a retry cannot help.
Re-send a dead letter with ``producer.send(task, *args)`` once it is fixed.

A message whose last delivery never finished (its consumer died while its
handler ran) arrives with a delivery count above ``max_deliveries``: it is
dead-lettered without running, with the last error recorded for it.

Backpressure
------------

A consumer holds at most ``capacity`` un-acked messages: its dispatcher's
``max_buffered + max_workers``. It reads (``XREADGROUP COUNT``) and claims
only as much as there is room for, so a slow handler slows the reading, the
rest of the backlog stays in Redis for other consumers, and no process
holds more than it can run.

Stopping
--------

``stop(timeout)`` stops reading, hands back the messages it has not started
(others claim them at once), lets the running handlers finish and be acked
within *timeout*, and interrupts and hands back the rest. ``greenworks run``
runs a consumer provided to a registry as a worker (it has ``run(ctx)``);
under gunicorn, ``greenworks.gunicorn.runtime.add(lambda: StreamConsumer(...),
stop=lambda c: c.stop(timeout=...))`` runs one per worker process.
"""

from collections.abc import Iterable
from typing import Any

from zope.interface import implementer

from greenworks import _checks
from greenworks._streams_consumer import DEFAULT_WORKERS, StreamConsumer, default_consumer_name
from greenworks._streams_ledger import Message, current_message
from greenworks._streams_wire import (
    PAYLOAD,
    SEND_DEDUPE,
    TASK,
    check_json,
    encode_payload,
    make_client,
    text,
)
from greenworks.interfaces import IDedupe, IStreamProducer

__all__ = [
    "DEFAULT_WORKERS",
    "Message",
    "RedisDedupe",
    "StreamConsumer",
    "StreamProducer",
    "check_json",
    "current_message",
    "default_consumer_name",
]


@implementer(IStreamProducer)
class StreamProducer:
    """Default implementation of `IStreamProducer`.

    A message is one ``XADD`` (one round trip); with a *dedupe_key* it is a
    Lua script that adds the message only if the key is new, and remembers
    the key for *dedupe_ttl* seconds. A send whose reply was lost (a
    connection cut at the wrong moment) and is retried may add the message
    twice; give it a *dedupe_key* where that matters.

    :param url_or_client: a ``redis://`` URL or a ``redis.Redis`` client.
    :param str stream: the stream's key.
    :keyword int maxlen: trim the stream to about this many entries on every
        send (``XADD MAXLEN ~``; None: never). Trimming deletes the oldest
        entries whether or not they were handled, so keep it well above the
        largest backlog you can have: a message trimmed before it was read
        is gone without a trace, and one trimmed while pending is reported
        by the consumer as lost.
    :keyword float dedupe_ttl: seconds a *dedupe_key* is remembered (default one hour).
    :raises InvalidArgument: for a bad stream, maxlen, dedupe_ttl or client.
    """

    def __init__(
        self, url_or_client: Any, stream: str, *, maxlen: int | None = None, dedupe_ttl: float = 3600.0
    ) -> None:
        self._stream = _checks.name("stream", stream)
        self._maxlen: int | None = _checks.count("maxlen", maxlen, minimum=1, none=True)
        self._dedupe_ms = max(1, round(_checks.seconds("dedupe_ttl", dedupe_ttl, positive=True) * 1000))
        self._client = make_client(url_or_client)
        self._send_dedupe = self._client.register_script(SEND_DEDUPE)
        self._sent = 0
        self._duplicates = 0

    @property
    def stream(self) -> str:
        return self._stream

    @property
    def maxlen(self) -> int | None:
        return self._maxlen

    def send(self, task_name: str, /, *args: Any, dedupe_key: str | None = None, **kwargs: Any) -> str:
        """See `IStreamProducer.send`. Blocks for one round trip.

        ``dedupe_key`` is the producer's own keyword, so a handler cannot
        take an argument of that name. Duplicate sends are counted in
        :meth:`stats`.

        :raises InvalidArgument: naming ``task_name``, ``dedupe_key``, or the
            argument (``args[1]``, ``kwargs['when']``...) that JSON cannot carry.
        """
        _checks.name("task_name", task_name)
        payload = encode_payload(args, kwargs)
        if dedupe_key is None:
            if self._maxlen is None:
                message_id = self._client.xadd(self._stream, {TASK: task_name, PAYLOAD: payload})
            else:
                message_id = self._client.xadd(
                    self._stream, {TASK: task_name, PAYLOAD: payload}, maxlen=self._maxlen, approximate=True
                )
            self._sent += 1
            return str(text(message_id))
        _checks.name("dedupe_key", dedupe_key)
        added, message_id = self._send_dedupe(
            keys=[self._stream, "%s:dedupe:%s" % (self._stream, dedupe_key)],
            args=[
                self._dedupe_ms,
                "" if self._maxlen is None else self._maxlen,
                TASK,
                task_name,
                PAYLOAD,
                payload,
            ],
        )
        if added:
            self._sent += 1
        else:
            self._duplicates += 1
        return str(text(message_id))

    def stats(self) -> dict[str, int]:
        """See `IStreamProducer.stats`."""
        return {"sent": self._sent, "duplicates": self._duplicates}

    def __repr__(self) -> str:
        return "<greenworks.streams.StreamProducer %r sent=%d>" % (self._stream, self._sent)


@implementer(IDedupe)
class RedisDedupe:
    """Default implementation of `IDedupe`: one Redis key per completed message, for *ttl* seconds.

    The key is ``<prefix><stream>:<group>:<message id>``. The consumer asks
    :meth:`seen` only for redeliveries (``delivery_count > 1``; a first
    delivery cannot have completed before) and calls :meth:`remember` for
    each batch it acks, just before the ``XACK``. Choose *ttl* longer than
    the longest time a message can stay pending (``claim_idle`` plus the
    retries' backoff, plus an outage).

    :param url_or_client: a ``redis://`` URL or a ``redis.Redis`` client (the
        consumer's own server or another one).
    :param float ttl: seconds a completion is remembered, > 0.
    :keyword str prefix: of every key.
    :raises InvalidArgument: for a bad client, ttl or prefix.
    """

    def __init__(self, url_or_client: Any, ttl: float = 86400.0, *, prefix: str = "greenworks:done:") -> None:
        self._client = make_client(url_or_client)
        self._ttl_ms = max(1, round(_checks.seconds("ttl", ttl, positive=True) * 1000))
        self._prefix = _checks.name("prefix", prefix)

    def _key(self, message: Any) -> str:
        return "%s%s:%s:%s" % (self._prefix, message.stream, message.group, message.id)

    def seen(self, message: Any) -> bool:
        """See `IDedupe.seen`."""
        return bool(self._client.exists(self._key(message)))

    def remember(self, messages: Iterable[Any]) -> None:
        """See `IDedupe.remember`."""
        pipe = self._client.pipeline(transaction=False)
        for message in messages:
            pipe.set(self._key(message), 1, px=self._ttl_ms)
        pipe.execute()

    def __repr__(self) -> str:
        return "<greenworks.streams.RedisDedupe prefix=%r ttl=%ss>" % (self._prefix, self._ttl_ms / 1000)
