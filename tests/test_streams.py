"""Tests for greenworks.streams: producer, consumer, dedupe, against a real redis-server."""

import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import urllib.request

import gevent
import pytest
import redis
import zope.event
from _gunicorn_worker import gevent_worker_unavailable
from _redis_server import REDIS_SERVER, RedisServer
from gevent.event import Event
from gevent.queue import Queue
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from greenworks import events
from greenworks import interfaces as i
from greenworks._component import State
from greenworks._streams_wire import Wire
from greenworks.backoff import StaticBackoff
from greenworks.dispatcher import Dispatcher
from greenworks.exceptions import InvalidArgument, NoCurrentMessageError, ReentrantStopError
from greenworks.interfaces import IBackoff
from greenworks.streams import Message, RedisDedupe, StreamConsumer, StreamProducer, current_message
from greenworks.testing import settle

STREAM, GROUP = "jobs", "workers"
FAST = StaticBackoff(0.0)

pytestmark = pytest.mark.timeout(20)


# -- helpers --------------------------------------------------------------------------


class Recorder:
    """Collects greenworks events; waits for them without sleeping."""

    def __init__(self):
        self.events = []
        self._changed = Event()

    def __call__(self, event):
        self.events.append(event)
        self._changed.set()

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, kind, count=1, timeout=10):
        with gevent.Timeout(
            timeout, AssertionError("fewer than %d %s: %r" % (count, kind.__name__, self.events))
        ):
            while len(self.of(kind)) < count:
                self._changed.clear()
                self._changed.wait()
        return self.of(kind)


_RECORDERS = []


@pytest.fixture(autouse=True)
def recorder():
    """Every test records the events; helpers like acked() wait on them."""
    rec = Recorder()
    zope.event.subscribers.append(rec)
    _RECORDERS.append(rec)
    try:
        yield rec
    finally:
        _RECORDERS.remove(rec)
        zope.event.subscribers.remove(rec)


def acked(consumer, count, timeout=10):
    """Wait until *consumer* has emitted *count* MessageAcked events."""
    rec = _RECORDERS[-1]
    error = AssertionError("%s: fewer than %d acks" % (consumer.name, count))
    with gevent.Timeout(timeout, error):
        while len([e for e in rec.of(events.MessageAcked) if e.component is consumer]) < count:
            rec._changed.clear()
            rec._changed.wait()


class SpyWire(Wire):
    """The consumer's real wire, announcing what it read and when it handed messages back."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read_total = 0
        self.handed_back = 0
        self.changed = Event()

    def read(self, consumer, count, block_ms):
        entries = super().read(consumer, count, block_ms)
        self.read_total += len(entries)
        self.changed.set()
        return entries

    def touch(self, consumer, pairs, idle_ms=0):
        pairs = list(pairs)
        result = super().touch(consumer, pairs, idle_ms)
        if idle_ms:
            self.handed_back += len(pairs)
            self.changed.set()
        return result

    def wait_for(self, predicate, timeout=10):
        with gevent.Timeout(timeout, AssertionError("wire: read %d" % self.read_total)):
            while not predicate(self):
                self.changed.clear()
                self.changed.wait()


def spy(consumer):
    """Give *consumer* (not started yet) a SpyWire and return it."""
    consumer._wire = SpyWire(consumer._client, consumer.stream, consumer.group, consumer.dead_letter)
    return consumer._wire


class Calls:
    """A handler that records each call (its args and delivery) and lets tests wait for n calls."""

    def __init__(self, fail=lambda message: False, gate=None):
        self.calls = []
        self.fail = fail
        self.gate = gate
        self._changed = Event()

    def __call__(self, *args, **kwargs):
        message = current_message()
        self.calls.append((message.id, message.delivery_count, args, kwargs))
        self._changed.set()
        if self.gate is not None:
            self.gate.wait()
        if self.fail(message):
            raise ValueError("poison %s" % (args,))

    def wait_for(self, count, timeout=10):
        with gevent.Timeout(
            timeout, AssertionError("%d of %d calls: %r" % (len(self.calls), count, self.calls))
        ):
            while len(self.calls) < count:
                self._changed.clear()
                self._changed.wait()
        return self.calls


@pytest.fixture
def server(tmp_path):
    """A real redis-server on 127.0.0.1 (see tests/_redis_server.py), empty after a restart."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH (Debian package redis-server)")
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    try:
        yield redis_server
    finally:
        redis_server.stop(kill=True)


@pytest.fixture
def client(server):
    c = redis.Redis.from_url(server.url, protocol=2)
    yield c
    c.close()


@pytest.fixture
def producer(server):
    return StreamProducer(server.url, STREAM)


def consumer_for(server, handlers, **options):
    options.setdefault("backoff", FAST)
    options.setdefault("claim_idle", 60.0)
    return StreamConsumer(server.url, STREAM, GROUP, handlers, **options)


@pytest.fixture
def dispatchers():
    """Start Dispatchers the way their owner would, and quit them after the test."""
    started = []

    def make(*args, **kwargs):
        dispatcher = Dispatcher(*args, **kwargs)
        dispatcher.run()
        started.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in started:
        dispatcher.quit()


def pending(client, consumer=None):
    """The group's pending entries as {id: (consumer, delivery count)}."""
    rows = client.xpending_range(STREAM, GROUP, "-", "+", 1000, consumername=consumer)
    return {r["message_id"].decode(): (r["consumer"].decode(), r["times_delivered"]) for r in rows}


def dead_letters(client, stream=STREAM + ":dead"):
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange(stream)]


# -- interfaces -----------------------------------------------------------------------


class TestInterfaces:
    def test_classes_provide_their_interfaces(self, server):
        """Consumer, producer, dedupe and message implement their interfaces, attributes included."""
        verifyClass(i.IStreamConsumer, StreamConsumer)
        verifyClass(i.IWorker, StreamConsumer)
        verifyClass(i.IStreamProducer, StreamProducer)
        verifyClass(i.IDedupe, RedisDedupe)
        verifyClass(i.IMessage, Message)
        consumer = consumer_for(server, {"t": print})
        verifyObject(i.IStreamConsumer, consumer)
        verifyObject(i.IWorker, consumer)
        verifyObject(i.IStreamProducer, StreamProducer(server.url, STREAM))
        verifyObject(i.IDedupe, RedisDedupe(server.url, 60))
        verifyObject(i.IMessage, Message("1-0", "t", (), {}, 1, STREAM, GROUP, "c"))

    def test_events_provide_their_interfaces(self):
        """Each stream event kind implements its interface with its fields."""
        kinds = {
            events.MessageAcked: i.IMessageAcked,
            events.MessageFailed: i.IMessageFailed,
            events.MessageDeadLettered: i.IMessageDeadLettered,
            events.MessagesReclaimed: i.IMessagesReclaimed,
            events.MessagesLost: i.IMessagesLost,
            events.StreamDisconnected: i.IStreamDisconnected,
            events.StreamReconnected: i.IStreamReconnected,
        }
        for kind, interface in kinds.items():
            verifyClass(interface, kind)
            event = kind(None, "n", None, *range(len(kind.fields)))
            verifyObject(interface, event)


# -- arguments ------------------------------------------------------------------------


class TestArguments:
    @pytest.mark.parametrize(
        "options, argument",
        [
            ({"batch": 0}, "batch"),
            ({"batch": True}, "batch"),
            ({"claim_idle": 0}, "claim_idle"),
            ({"claim_idle": math.nan}, "claim_idle"),
            ({"max_deliveries": 0}, "max_deliveries"),
            ({"backoff": 3}, "backoff"),
            ({"reconnect_backoff": "x"}, "reconnect_backoff"),
            ({"dead_letter": STREAM}, "dead_letter"),
            ({"dedupe": object()}, "dedupe"),
            ({"dispatcher": object()}, "dispatcher"),
            ({"dispatcher": Dispatcher(1, 1, 1), "workers": 3}, "workers"),
            ({"workers": 0}, "workers"),
            ({"consumer": ""}, "consumer"),
            ({"name": ""}, "name"),
        ],
    )
    def test_bad_consumer_options_are_refused_naming_them(self, options, argument):
        """Every consumer option is checked at construction; the error names it."""
        with pytest.raises(InvalidArgument, match=argument):
            StreamConsumer("redis://127.0.0.1:1/0", STREAM, GROUP, {"t": print}, **options)

    @pytest.mark.parametrize(
        "handlers, argument",
        [
            ({}, "handlers"),
            ([("t", print)], "handlers"),
            ({"t": 3}, r"handlers\['t'\]"),
            ({"": print}, "handlers"),
        ],
    )
    def test_bad_handlers_are_refused(self, handlers, argument):
        """Handlers must be a non-empty dict of names to callables."""
        with pytest.raises(InvalidArgument, match=argument):
            StreamConsumer("redis://127.0.0.1:1/0", STREAM, GROUP, handlers)

    def test_bad_client_stream_and_group_are_refused(self):
        """A client that is neither a URL nor a redis client, and empty names, are refused."""
        with pytest.raises(InvalidArgument, match="url_or_client"):
            StreamConsumer(42, STREAM, GROUP, {"t": print})
        with pytest.raises(InvalidArgument, match="stream"):
            StreamConsumer("redis://127.0.0.1:1/0", "", GROUP, {"t": print})
        with pytest.raises(InvalidArgument, match="group"):
            StreamConsumer("redis://127.0.0.1:1/0", STREAM, " ", {"t": print})

    def test_bad_producer_options_are_refused(self):
        """Producer maxlen, dedupe_ttl and stream are checked at construction."""
        with pytest.raises(InvalidArgument, match="maxlen"):
            StreamProducer("redis://127.0.0.1:1/0", STREAM, maxlen=0)
        with pytest.raises(InvalidArgument, match="dedupe_ttl"):
            StreamProducer("redis://127.0.0.1:1/0", STREAM, dedupe_ttl=math.inf)
        with pytest.raises(InvalidArgument, match="stream"):
            StreamProducer("redis://127.0.0.1:1/0", "")
        with pytest.raises(InvalidArgument, match="ttl"):
            RedisDedupe("redis://127.0.0.1:1/0", 0)

    def test_stop_timeout_is_checked(self, server):
        """stop() refuses a NaN timeout, naming it."""
        with pytest.raises(InvalidArgument, match="timeout"):
            consumer_for(server, {"t": print}).stop(math.nan)


# -- producer -------------------------------------------------------------------------


class TestProducer:
    def test_send_adds_one_readable_entry_and_returns_its_id(self, producer, client):
        """send() is one XADD of task and a JSON payload of args and kwargs; it returns the id."""
        message_id = producer.send("resize", "a.jpg", (1, 2), width=640)
        [(entry_id, fields)] = client.xrange(STREAM)
        assert entry_id.decode() == message_id
        assert fields[b"task"] == b"resize"
        assert json.loads(fields[b"payload"]) == {"args": ["a.jpg", [1, 2]], "kwargs": {"width": 640}}
        assert producer.stats() == {"sent": 1, "duplicates": 0}

    @pytest.mark.parametrize(
        "args, kwargs, named",
        [
            ((object(),), {}, r"args\[0\]"),
            ((1, math.nan), {}, r"args\[1\].*NaN"),
            ((), {"when": {"at": [1, {2: "x"}]}}, r"kwargs\['when'\]\['at'\]\[1\] key 2"),
            ((), {"blob": b"bytes"}, r"kwargs\['blob'\]"),
            (({1, 2},), {}, r"args\[0\]"),
        ],
    )
    def test_what_json_cannot_carry_is_refused_naming_the_argument(
        self, producer, client, args, kwargs, named
    ):
        """Objects, NaN, bytes, sets and non-str keys are refused, naming the argument; nothing is sent."""
        with pytest.raises(InvalidArgument, match=named):
            producer.send("t", *args, **kwargs)
        assert client.xlen(STREAM) == 0

    def test_a_container_holding_itself_is_refused(self, producer):
        """A self-referencing list is refused rather than recursing for ever."""
        loop = [1]
        loop.append(loop)
        with pytest.raises(InvalidArgument, match=r"args\[0\]\[1\].*contains itself"):
            producer.send("t", loop)

    def test_bad_task_name_is_refused(self, producer):
        """The task name must be a non-empty str."""
        with pytest.raises(InvalidArgument, match="task_name"):
            producer.send("")

    def test_maxlen_trims_the_stream_approximately(self, server, client):
        """With maxlen, the stream stays near that length however many messages are sent."""
        producer = StreamProducer(server.url, STREAM, maxlen=10)
        for n in range(600):
            producer.send("t", n)
        # MAXLEN ~ trims whole nodes of (by default) 100 entries.
        assert 10 <= client.xlen(STREAM) <= 110

    def test_dedupe_key_adds_a_message_once_within_the_window(self, producer, client):
        """A second send with the same dedupe_key adds nothing and returns the first id; the key expires."""
        first = producer.send("charge", 10, dedupe_key="order-7")
        again = producer.send("charge", 10, dedupe_key="order-7")
        other = producer.send("charge", 10, dedupe_key="order-8")
        assert again == first and other != first
        assert client.xlen(STREAM) == 2
        assert producer.stats() == {"sent": 2, "duplicates": 1}
        ttl = client.pttl("%s:dedupe:order-7" % STREAM)
        assert 3_500_000 < ttl <= 3_600_000  # the default window, one hour

    def test_dedupe_key_works_with_maxlen(self, server, client):
        """The deduplicating script trims like a plain send."""
        producer = StreamProducer(server.url, STREAM, maxlen=5, dedupe_ttl=5)
        for n in range(300):
            producer.send("t", n, dedupe_key="k%d" % n)
        assert client.xlen(STREAM) <= 105
        assert 0 < client.pttl("%s:dedupe:k0" % STREAM) <= 5000


# -- consumer: the happy path ---------------------------------------------------------


class TestDelivery:
    def test_ack_comes_after_the_handler_returned(self, server, producer, client):
        """While its handler runs a message is pending; once it returned, it is acked."""
        gate = Event()
        handler = Calls(gate=gate)
        message_id = producer.send("t", 1, key="v")
        with consumer_for(server, {"t": handler}) as consumer:
            handler.wait_for(1)
            assert pending(client) == {message_id: (consumer.consumer, 1)}
            gate.set()
            acked(consumer, 1)
            assert pending(client) == {}
        assert handler.calls == [(message_id, 1, (1,), {"key": "v"})]

    def test_handler_sees_its_message(self, server, producer):
        """current_message() gives the id, task, arguments, delivery count and names."""
        seen = []
        done = Event()

        def handler(*args, **kwargs):
            seen.append(current_message())
            done.set()

        message_id = producer.send("t", "x", n=2)
        with consumer_for(server, {"t": handler}, consumer="me"):
            done.wait(10)
        [message] = seen
        assert (message.id, message.task, message.args, message.kwargs) == (message_id, "t", ("x",), {"n": 2})
        assert (message.delivery_count, message.stream, message.group, message.consumer) == (
            1,
            STREAM,
            GROUP,
            "me",
        )
        with pytest.raises(NoCurrentMessageError):
            current_message()

    def test_group_is_created_at_the_start_of_the_stream(self, server, producer, client):
        """Messages sent before the group existed are handled: it is created from id 0, with MKSTREAM."""
        producer.send("t", 1)
        handler = Calls()
        with consumer_for(server, {"t": handler}):
            handler.wait_for(1)
        assert [g["name"] for g in client.xinfo_groups(STREAM)] == [GROUP.encode()]

    def test_consumer_name_defaults_to_host_and_pid(self, server):
        """Without consumer=, the consumer is named host:pid."""
        import os
        import socket

        assert consumer_for(server, {"t": print}).consumer == "%s:%d" % (
            socket.gethostname(),
            os.getpid(),
        )

    def test_start_is_idempotent_and_stop_then_start_again_works(self, server, producer):
        """start() twice is one start; a stopped consumer starts afresh."""
        handler = Calls()
        consumer = consumer_for(server, {"t": handler})
        assert consumer.start() is consumer.start() is consumer
        producer.send("t", 1)
        handler.wait_for(1)
        assert consumer.stop(5) is True and consumer.state is State.STOPPED
        assert consumer.stop() is True
        producer.send("t", 2)
        consumer.start()
        handler.wait_for(2)
        assert consumer.stop(5) is True
        assert [c[2] for c in handler.calls] == [(1,), (2,)]

    def test_snapshot_is_json_and_reports_lag_and_counts(self, server, producer):
        """The snapshot is plain JSON with the header, the counters and the group's lag from XINFO."""
        handler = Calls()
        for n in range(3):
            producer.send("t", n)
        with consumer_for(server, {"t": handler}) as consumer:
            handler.wait_for(3)
            acked(consumer, 3)
            consumer._keeper._refresh_info()
            snap = json.loads(json.dumps(consumer.snapshot()))
        assert snap["component"] == "stream_consumer" and snap["state"] == "running"
        assert snap["started_at"].endswith("+00:00") and snap["info_at"].endswith("+00:00")
        assert (snap["acked"], snap["held"], snap["lag"], snap["pending"], snap["lag_exact"]) == (
            3,
            0,
            0,
            0,
            True,
        )
        assert snap["capacity"] == consumer.capacity == 210 and snap["owns_dispatcher"] is True
        assert snap["redis"] == {"connected": True, "outage_since": None, "last_error": None}

    def test_lag_counts_what_the_group_has_not_read(self, server, producer, dispatchers):
        """With a backlog beyond the consumer's capacity, lag is the unread rest."""
        gate = Event()
        handler = Calls(gate=gate)
        for n in range(20):
            producer.send("t", n)
        consumer = consumer_for(server, {"t": handler}, dispatcher=dispatchers(2, 1, 2))
        wire = spy(consumer)
        consumer.start()
        try:
            handler.wait_for(2)
            wire.wait_for(lambda w: w.read_total == 4)
            consumer._keeper._refresh_info()
            assert consumer.stats()["lag"] == 16 and consumer.stats()["pending"] == 4
        finally:
            gate.set()
            consumer.stop(5)

    def test_acked_events_are_emitted(self, server, producer, recorder):
        """Each ack emits MessageAcked with the id, task and delivery count."""
        message_id = producer.send("t", 1)
        with consumer_for(server, {"t": Calls()}) as consumer:
            [event] = recorder.wait_for(events.MessageAcked)
        assert (event.component, event.message_id, event.task, event.delivery_count) == (
            consumer,
            message_id,
            "t",
            1,
        )
        assert recorder.of(events.ComponentStarted) and recorder.of(events.ComponentStopped)


# -- consumer: failures ---------------------------------------------------------------


@implementer(IBackoff)
class RecordingBackoff:
    """Waits attempt * 10 seconds and records the attempts it was asked about."""

    def __init__(self):
        self.attempts = []

    def duration(self, attempt):
        self.attempts.append(attempt)
        return attempt * 10.0


class TestFailures:
    def test_failure_is_retried_after_the_backoff_of_its_delivery_count(
        self,
        server,
        producer,
        client,
        clock,
        recorder,
    ):
        """A failed message stays pending and runs again only after backoff.duration(delivery_count)."""
        backoff = RecordingBackoff()
        handler = Calls(fail=lambda m: m.delivery_count < 3)
        message_id = producer.send("t", 1)
        consumer = consumer_for(server, {"t": handler}, backoff=backoff, clock=clock)
        consumer.start()
        try:
            [failed] = recorder.wait_for(events.MessageFailed)
            assert (failed.delivery_count, failed.retry_in, str(failed.error)) == (1, 10.0, "poison (1,)")
            assert pending(client) == {message_id: (consumer.consumer, 1)}
            clock.wait_for_sleepers(2)  # the keeper and the retrier
            clock.advance(9.9)
            settle()
            assert consumer._ledger.next_due() == pytest.approx(0.1)  # still waiting, not yet due
            assert len(handler.calls) == 1
            clock.advance(0.1)
            handler.wait_for(2)
            assert pending(client) == {message_id: (consumer.consumer, 2)}
            recorder.wait_for(events.MessageFailed, 2)
            clock.wait_for_sleepers(2)
            clock.advance(20)
            handler.wait_for(3)
            acked(consumer, 1)
        finally:
            consumer.stop(5)
        assert [c[1] for c in handler.calls] == [1, 2, 3]
        assert backoff.attempts == [1, 2]
        assert pending(client) == {} and dead_letters(client) == []
        stats = consumer.stats()
        assert (stats["failed"], stats["retried"], stats["acked"]) == (2, 2, 1)

    def test_dead_letter_after_exactly_max_deliveries_with_the_error(
        self,
        server,
        producer,
        client,
        recorder,
    ):
        """A message failing every time runs max_deliveries times, then moves to <stream>:dead, acked."""
        handler = Calls(fail=lambda m: True)
        message_id = producer.send("t", 7, k="v")
        with consumer_for(server, {"t": handler}, max_deliveries=3) as consumer:
            [dead] = recorder.wait_for(events.MessageDeadLettered)
        assert [c[1] for c in handler.calls] == [1, 2, 3]
        [letter] = dead_letters(client)
        assert letter["id"] == message_id and letter["task"] == "t"
        assert json.loads(letter["payload"]) == {"args": [7], "kwargs": {"k": "v"}}
        assert letter["error"] == "ValueError: poison (7,)" and "ValueError" in letter["traceback"]
        assert (letter["deliveries"], letter["group"], letter["consumer"]) == ("3", GROUP, consumer.consumer)
        assert (dead.message_id, dead.delivery_count, dead.error) == (
            message_id,
            3,
            "ValueError: poison (7,)",
        )
        assert [e.retry_in for e in recorder.of(events.MessageFailed)] == [0.0, 0.0, None]
        assert pending(client) == {}
        stats = consumer.stats()
        assert (stats["failed"], stats["retried"], stats["dead_lettered"], stats["acked"]) == (3, 2, 1, 0)

    def test_unknown_task_goes_to_the_dead_letters_at_once(self, server, producer, client, recorder):
        """A task with no handler is dead-lettered on its first delivery with a clear error."""
        message_id = producer.send("nosuch", 1)
        with consumer_for(server, {"t": print, "u": print}, dead_letter="graveyard"):
            recorder.wait_for(events.MessageDeadLettered)
        [letter] = dead_letters(client, "graveyard")
        assert letter["id"] == message_id and letter["deliveries"] == "1"
        assert letter["error"] == "unknown task 'nosuch': no handler of that name (handlers: t, u)"
        assert pending(client) == {} and not recorder.of(events.MessageFailed)

    def test_malformed_entry_goes_to_the_dead_letters(self, server, client, recorder):
        """An entry that is not a greenworks message is dead-lettered, saying why."""
        alien = client.xadd(STREAM, {"hello": "world"}).decode()
        broken = client.xadd(STREAM, {"task": "t", "payload": "{not json"}).decode()
        with consumer_for(server, {"t": print}):
            recorder.wait_for(events.MessageDeadLettered, 2)
        letters = {letter["id"]: letter for letter in dead_letters(client)}  # handled concurrently
        first, second = letters[alien], letters[broken]
        assert first["error"].startswith("malformed message: not a greenworks message")
        assert second["error"].startswith("malformed message: payload is not") and second["task"] == "t"

    def test_dispatcher_timeout_counts_as_a_failure(self, server, producer, recorder):
        """A handler interrupted by its dispatcher's task_timeout is retried like one that raised."""
        first = Event()

        def slow():
            if current_message().delivery_count == 1:
                first.set()
                gevent.sleep(30)

        producer.send("slow")
        dispatcher = Dispatcher(4, 1, 2, task_timeout=0.05)
        dispatcher.run()
        try:
            with consumer_for(server, {"slow": slow}, dispatcher=dispatcher):
                [failed] = recorder.wait_for(events.MessageFailed)
                recorder.wait_for(events.MessageAcked)
            assert isinstance(failed.error, gevent.Timeout) and failed.delivery_count == 1
        finally:
            dispatcher.quit()

    def test_last_delivery_lost_is_dead_lettered_without_running(self, server, producer, client, recorder):
        """A message reclaimed with a count above max_deliveries is dead-lettered with its last error."""
        message_id = producer.send("t", 1)
        client.xgroup_create(STREAM, GROUP, "0")
        client.xreadgroup(GROUP, "dead", {STREAM: ">"})
        client.eval(
            "return redis.call('XCLAIM', KEYS[1], ARGV[1], 'dead', 0, ARGV[2], 'RETRYCOUNT', 3, 'JUSTID')",
            1,
            STREAM,
            GROUP,
            message_id,
        )
        client.hset("%s:errors:%s" % (STREAM, GROUP), message_id, "KeyError: 'x'")
        handler = Calls()
        with consumer_for(server, {"t": handler}, max_deliveries=3, claim_idle=0.05):
            recorder.wait_for(events.MessageDeadLettered)
        assert handler.calls == []
        [letter] = dead_letters(client)
        assert letter["deliveries"] == "3" and "last error: KeyError: 'x'" in letter["error"]
        assert "delivered 4 times, more than max_deliveries=3" in letter["error"]
        assert pending(client) == {} and client.hlen("%s:errors:%s" % (STREAM, GROUP)) == 0


# -- consumer: ownership --------------------------------------------------------------


class TestOwnership:
    def test_messages_of_a_dead_consumer_are_reclaimed_after_claim_idle(
        self,
        server,
        producer,
        client,
        recorder,
    ):
        """What a consumer read and never acked is claimed with XAUTOCLAIM and run, delivery count 2."""
        ids = [producer.send("t", n) for n in range(3)]
        client.xgroup_create(STREAM, GROUP, "0")
        client.xreadgroup(GROUP, "dead", {STREAM: ">"})  # read, then died
        handler = Calls()
        with consumer_for(server, {"t": handler}, claim_idle=0.2) as consumer:
            handler.wait_for(3)
            [claimed] = recorder.wait_for(events.MessagesReclaimed)
            acked(consumer, 3)
        assert sorted(c[0] for c in handler.calls) == ids and {c[1] for c in handler.calls} == {2}
        assert sorted(claimed.message_ids) == ids and consumer.stats()["reclaimed"] == 3
        assert pending(client) == {}

    def test_a_slow_handler_is_renewed_and_not_claimed_by_another(self, server, producer, client):
        """A handler running past claim_idle keeps its message: the owner renews it, nobody claims it."""
        gate = Event()
        slow = Calls(gate=gate)
        other = Calls()
        producer.send("t", 1)
        owner = consumer_for(server, {"t": slow}, claim_idle=0.3, consumer="owner").start()
        slow.wait_for(1)
        thief = consumer_for(server, {"t": other}, claim_idle=0.3, consumer="thief")
        passes = []
        seen_enough = Event()
        claim = None
        try:
            thief.start()
            claim = thief._keeper._claim

            def counting_claim():
                claim()
                passes.append(1)
                if len(passes) >= 8:  # about 2.7 claim_idle
                    seen_enough.set()

            thief._keeper._claim = counting_claim
            assert seen_enough.wait(10)
            assert other.calls == [] and list(pending(client).values()) == [("owner", 1)]
        finally:
            gate.set()
            acked(owner, 1)
            owner.stop(5)
            thief.stop(5)
        assert len(slow.calls) == 1 and other.calls == []

    def test_backpressure_never_holds_more_than_buffer_plus_workers(
        self, server, producer, client, dispatchers
    ):
        """With a slow handler the group's un-acked messages never exceed max_buffered + max_workers."""
        capacity = 4 + 2
        observed = []

        def slow(n):
            observed.append(client.xpending(STREAM, GROUP)["pending"])
            gevent.sleep(0.005)  # the slow work itself

        for n in range(60):
            producer.send("slow", n)
        consumer = consumer_for(server, {"slow": slow}, dispatcher=dispatchers(4, 1, 2))
        reads = []

        class ReadSpy(SpyWire):
            def read(self, name, count, block_ms):
                reads.append((len(consumer._ledger), count))
                return super().read(name, count, block_ms)

        consumer._wire = ReadSpy(consumer._client, STREAM, GROUP, STREAM + ":dead")
        stop_sampling = Event()

        def sample():
            while not stop_sampling.is_set():
                observed.append(client.xpending(STREAM, GROUP)["pending"])
                gevent.sleep(0.001)

        sampler = gevent.spawn(sample)
        try:
            with consumer:
                acked(consumer, 60)
        finally:
            stop_sampling.set()
            sampler.join()
        assert consumer.capacity == capacity
        assert max(observed) == capacity  # the bound is reached...
        assert all(held + count <= capacity for held, count in reads)  # ...and never passed
        assert pending(client) == {}

    def test_pending_messages_trimmed_away_are_reported_lost(self, server, producer, client, recorder):
        """A pending message deleted from the stream (MAXLEN too short) is reported lost, not run."""
        ids = [producer.send("t", n) for n in range(2)]
        client.xgroup_create(STREAM, GROUP, "0")
        client.xreadgroup(GROUP, "dead", {STREAM: ">"})
        client.xdel(STREAM, ids[0])
        handler = Calls()
        with consumer_for(server, {"t": handler}, claim_idle=0.1) as consumer:
            [lost] = recorder.wait_for(events.MessagesLost)
            handler.wait_for(1)
        assert lost.message_ids == (ids[0],) and consumer.stats()["lost"] == 1
        assert [c[0] for c in handler.calls] == [ids[1]]

    def test_consumers_holding_nothing_are_forgotten_and_holders_kept(self, server, producer, client):
        """Pruning deletes idle consumers with nothing pending, never one that holds a message."""
        ids = [producer.send("t", n) for n in range(2)]
        client.xgroup_create(STREAM, GROUP, "0")
        client.xreadgroup(GROUP, "gone", {STREAM: ">"}, count=1)
        client.xack(STREAM, GROUP, ids[0])
        client.xreadgroup(GROUP, "holder", {STREAM: ">"}, count=1)
        consumer = consumer_for(server, {"t": print}, consumer="me")
        assert consumer._wire.prune("me", 0) == ["gone"]
        assert [c["name"] for c in client.xinfo_consumers(STREAM, GROUP)] == [b"holder"]


# -- consumer: stop -------------------------------------------------------------------


class TestStop:
    def test_stop_finishes_running_handlers_and_hands_back_the_rest(
        self, server, producer, client, dispatchers
    ):
        """stop() lets running handlers finish and be acked; unstarted ones go to another consumer at once."""
        gate = Event()
        first = Calls(gate=gate)
        ids = [producer.send("t", n) for n in range(6)]
        a = consumer_for(server, {"t": first}, dispatcher=dispatchers(4, 1, 2), claim_idle=30, consumer="a")
        wire = spy(a)
        a.start()
        first.wait_for(2)
        wire.wait_for(lambda w: w.read_total == 6)
        stopping = gevent.spawn(a.stop, 10)
        wire.wait_for(lambda w: w.handed_back == 4)
        second = Calls()
        with consumer_for(server, {"t": second}, claim_idle=30, consumer="b") as b:
            second.wait_for(4)  # claimed at b's first pass, not 30 s later
            acked(b, 4)
            assert not stopping.ready()
            gate.set()
            assert stopping.get() is True
        started = {c[0] for c in first.calls}
        assert len(started) == 2 and started | {c[0] for c in second.calls} == set(ids)
        assert {c[1] for c in second.calls} == {1}  # the never-started delivery did not count
        assert pending(client) == {} and a.state is State.STOPPED

    def test_stop_timeout_interrupts_and_hands_back_a_stuck_handler(self, server, producer, client):
        """A handler running at the timeout is interrupted, its message handed back; stop() is False."""
        interrupted = []
        running = Event()

        def stuck():
            running.set()
            try:
                gevent.sleep(60)
            except Exception as exc:
                interrupted.append(exc)
                raise

        message_id = producer.send("stuck")
        a = consumer_for(server, {"stuck": stuck}, claim_idle=30, consumer="a").start()
        assert running.wait(10)
        assert a.stop(0.1) is False
        assert len(interrupted) == 1 and "stopping" in str(interrupted[0])
        assert pending(client) == {message_id: ("a", 1)}
        done = Calls()
        with consumer_for(server, {"stuck": done}, claim_idle=30):
            done.wait_for(1)
        assert done.calls[0][:2] == (message_id, 2)  # it had run once: that try counts

    def test_a_given_dispatcher_is_not_stopped(self, server, producer):
        """stop() stops the consumer's own dispatcher, never one it was given."""
        given = Dispatcher(10, 1, 2, name="shared")
        given.run()
        try:
            with consumer_for(server, {"t": Calls()}, dispatcher=given) as consumer:
                assert consumer.dispatcher is given and consumer.snapshot()["owns_dispatcher"] is False
            assert given.status.name == "RUNNING"
        finally:
            given.quit()
        own = consumer_for(server, {"t": Calls()})
        with own:
            assert own.dispatcher.status.name == "RUNNING"
        assert own.dispatcher.status.name == "STOPPED"

    def test_stop_from_a_handler_is_refused(self, server, producer):
        """A handler calling stop() on its own consumer gets ReentrantStopError instead of a deadlock."""
        raised = []
        done = Event()

        def handler():
            try:
                consumer.stop()
            except ReentrantStopError as exc:
                raised.append(exc)
            done.set()

        consumer = consumer_for(server, {"t": handler})
        producer.send("t")
        with consumer:
            done.wait(10)
        assert len(raised) == 1

    def test_run_is_an_iworker_that_stops_when_its_context_ends(self, server, producer):
        """run(ctx) starts, serves until ctx is cancelled, then stops: how greenworks run drives it."""
        from greenworks.context import with_cancel

        handler = Calls()
        consumer = consumer_for(server, {"t": handler})
        ctx = with_cancel()
        runner = gevent.spawn(consumer.run, ctx)
        producer.send("t", 1)
        handler.wait_for(1)
        assert consumer.state is State.RUNNING
        ctx.cancel()
        runner.get(timeout=10)
        assert consumer.state is State.STOPPED


# -- dedupe ---------------------------------------------------------------------------


class TestDedupe:
    def test_a_redelivery_of_a_completed_message_is_skipped(self, server, producer, client):
        """With RedisDedupe, a message completed before (ack lost) is acked on redelivery without running."""
        dedupe = RedisDedupe(server.url, 60)
        ids = [producer.send("t", n) for n in range(2)]
        client.xgroup_create(STREAM, GROUP, "0")
        client.xreadgroup(GROUP, "dead", {STREAM: ">"})
        # The dead consumer completed ids[0] and died before its XACK.
        dedupe.remember([Message(ids[0], "t", (), {}, 1, STREAM, GROUP, "dead")])
        handler = Calls()
        with consumer_for(server, {"t": handler}, dedupe=dedupe, claim_idle=0.1) as consumer:
            handler.wait_for(1)
            acked(consumer, 2)
        assert [c[0] for c in handler.calls] == [ids[1]]
        assert consumer.stats()["skipped_duplicates"] == 1 and pending(client) == {}

    def test_completions_are_remembered_and_first_deliveries_never_asked(self, server, producer, client):
        """Every completion is recorded with its ttl; first deliveries are run without a lookup."""
        dedupe = RedisDedupe(server.url, 60, prefix="done:")
        asked = []
        seen = dedupe.seen

        def spy(message):
            asked.append(message.id)
            return seen(message)

        dedupe.seen = spy
        message_id = producer.send("t", 1)
        with consumer_for(server, {"t": Calls()}, dedupe=dedupe) as consumer:
            acked(consumer, 1)
        key = "done:%s:%s:%s" % (STREAM, GROUP, message_id)
        assert asked == [] and 0 < client.pttl(key) <= 60000


# -- Redis outages --------------------------------------------------------------------


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not on PATH")
class TestOutages:
    @pytest.mark.timeout(30)
    def test_redis_restart_mid_run_loses_nothing(self, tmp_path, recorder, caplog):
        """Redis killed and restarted (persisted) mid-run: reconnected with backoff, said once, all done."""
        persisted = RedisServer(tmp_path, persist=True)
        persisted.start()
        try:
            producer = StreamProducer(persisted.url, STREAM)
            done = set()
            changed = Event()

            def handler(n):
                done.add(n)
                changed.set()

            consumer = StreamConsumer(
                persisted.url,
                STREAM,
                GROUP,
                {"t": handler},
                backoff=FAST,
                reconnect_backoff=StaticBackoff(0.05),
            )
            with caplog.at_level(logging.WARNING, logger="greenworks.streams"), consumer:
                for n in range(100):
                    producer.send("t", n)
                persisted.stop(kill=True)
                recorder.wait_for(events.StreamDisconnected)
                snap = consumer.snapshot()
                assert snap["redis"]["connected"] is False and snap["redis"]["outage_since"]
                persisted.start()
                [back] = recorder.wait_for(events.StreamReconnected)
                for n in range(100, 200):
                    producer.send("t", n)
                with gevent.Timeout(15, AssertionError("handled %d of 200" % len(done))):
                    while len(done) < 200:
                        changed.clear()
                        changed.wait()
                acked(consumer, 200)
            assert done == set(range(200))
            assert back.seconds >= 0 and consumer.stats()["outages"] == 1
            assert len([r for r in caplog.records if "Redis unreachable" in r.getMessage()]) == 1
            client = redis.Redis.from_url(persisted.url)
            assert client.xpending(STREAM, GROUP)["pending"] == 0
            client.close()
        finally:
            persisted.stop(kill=True)

    def test_an_empty_restart_recreates_the_group(self, server, producer, recorder, caplog):
        """Redis restarted without its data: the group is recreated and new messages are handled."""
        handler = Calls()
        consumer = consumer_for(server, {"t": handler}, reconnect_backoff=StaticBackoff(0.05))
        with caplog.at_level(logging.INFO, logger="greenworks.streams"), consumer:
            producer.send("t", 1)
            handler.wait_for(1)
            server.restart()
            recorder.wait_for(events.StreamDisconnected)
            recorder.wait_for(events.StreamReconnected)
            producer.send("t", 2)
            handler.wait_for(2)
        assert [c[2] for c in handler.calls] == [(1,), (2,)]


# -- the example, under real gunicorn and greenworks run ------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "09_stream_worker")
HANDLED = re.compile(r"handled order (\S+) \((\d+) items\) in pid (\d+), delivery (\d+)")
_NO_GUNICORN = gevent_worker_unavailable()


class Logged:
    """A process run from the example's directory; its stderr lines arrive on a queue."""

    def __init__(self, server, *args, **env):
        self.env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
            GREENWORKS_EXAMPLE_REDIS=server.url,
            GREENWORKS_EXAMPLE_CLAIM_IDLE="2",
            **env,
        )
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=EXAMPLE,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines = []
        self.queue = Queue()
        self._reader = gevent.spawn(self._read)

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def expect(self, pattern, timeout=30):
        regex = re.compile(pattern)
        tail = "\n".join(self.lines[-40:])
        with gevent.Timeout(timeout, AssertionError("no line matching %r:\n%s" % (pattern, tail))):
            while True:
                line = self.queue.get()
                if line is None:
                    raise AssertionError("process exited:\n" + "\n".join(self.lines[-40:]))
                match = regex.search(line)
                if match:
                    return match

    def orders(self, count):
        """Wait until *count* distinct orders were handled; return {order id: [(pid, delivery)]}."""
        seen = {}
        for match in (HANDLED.search(line) for line in self.lines):
            if match:
                seen.setdefault(match.group(1), []).append((int(match.group(3)), int(match.group(4))))
        while len(seen) < count:
            match = self.expect(HANDLED.pattern)
            seen.setdefault(match.group(1), []).append((int(match.group(3)), int(match.group(4))))
        return seen

    def send(self, count):
        """Run producer.py; return the ids it printed."""
        done = subprocess.run(
            [sys.executable, "producer.py", str(count)],
            cwd=EXAMPLE,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.split()

    def stop(self, timeout=30):
        """SIGTERM (a graceful stop) and return the exit code; SIGKILL the group if it hangs."""
        try:
            self.proc.terminate()
            return self.proc.wait(timeout=timeout)
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self._reader.join(timeout=5)
            self.proc.stderr.close()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="needs fork and signals")
class TestExample:
    @pytest.mark.timeout(90)
    @pytest.mark.skipif(_NO_GUNICORN is not None, reason=str(_NO_GUNICORN))
    def test_orders_are_handled_by_gunicorn_workers_and_drained_on_stop(self, server, client):
        """[MATCH] gunicorn -k gevent -w 2: orders from producer.py and /send all handled; SIGTERM drains."""
        from gunicorn.config import KNOWN_SETTINGS

        port = _free_port()
        args = ["-m", "gunicorn", "-c", "gunicorn.conf.py"]
        if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
            args.append("--no-control-socket")  # gunicorn >= 24 would share ~/.gunicorn/gunicorn.ctl
        app = Logged(server, *args, "app:application", GREENWORKS_EXAMPLE_BIND="127.0.0.1:%d" % port)
        try:
            pids = {int(app.expect(r"runtime started in pid (\d+)").group(1)) for _ in range(2)}
            assert len(pids) == 2
            sent = app.send(20)
            with urllib.request.urlopen("http://127.0.0.1:%d/send?orders=3" % port, timeout=10) as response:
                sent += json.loads(response.read())["sent"]
            assert len(set(sent)) == 23
            handled = app.orders(23)
            assert {pid for runs in handled.values() for pid, _ in runs} <= pids
            with urllib.request.urlopen("http://127.0.0.1:%d/status" % port, timeout=10) as response:
                status = json.loads(response.read())
            assert status["components"]["orders"]["component"] == "stream_consumer"
        finally:
            code = app.stop()
        assert code == 0, "\n".join(app.lines[-40:])
        assert sum("stream consumer 'orders': stopped (clean)" in line for line in app.lines) == 2
        assert client.xpending("example:orders", "shippers")["pending"] == 0

    @pytest.mark.timeout(60)
    def test_the_registry_runs_under_greenworks_run(self, server, client):
        """``greenworks run app:registry`` runs the same consumer as a worker and stops it on SIGTERM."""
        app = Logged(server, "-m", "greenworks", "run", "app:registry")
        try:
            app.expect(r"stream consumer 'orders': reading example:orders")
            sent = app.send(5)
            assert len(app.orders(5)) == 5 and len(sent) == 5
            assert app.send(5) == sent  # the same order ids again: deduplicated by the producer
        finally:
            code = app.stop()
        assert code == 0, "\n".join(app.lines[-40:])
        assert any("stream consumer 'orders': stopped (clean)" in line for line in app.lines)
        assert client.xlen("example:orders") == 5
