"""
How greenworks lays its messages out in Redis, and every command that moves them.

Import the public names from :mod:`greenworks.streams`; this module is
private. It holds one concept, the wire: the fields of a message, the JSON
rules, the Lua scripts, and :class:`Wire`, whose methods are the only code
that sends stream commands. Nothing here keeps state beyond a client and a
few names, nothing here retries, and every method may switch greenlets (a
network round trip) and raises what redis-py raises.

A message is one stream entry with two fields::

    task     the handler's name, a str
    payload  JSON: {"args": [...], "kwargs": {...}}

so ``redis-cli XRANGE jobs - +`` reads well. A dead letter adds the
original's id, the error and its traceback, the number of deliveries and
who gave up on it.

The scripts exist so that each move that must be atomic is: a deduplicated
send (``GET`` + ``XADD`` + ``SET``), giving a message back or renewing it
only while this consumer still owns it (``XPENDING`` + ``XCLAIM``), claiming
idle messages together with their delivery counts (``XAUTOCLAIM`` +
``XPENDING``), dead-lettering (``XADD`` + ``XACK``) and forgetting a
consumer only while it holds nothing (``XPENDING`` + ``XGROUP
DELCONSUMER``). Under Redis Cluster every key of a stream must hash to one
slot: put the stream's name in a hash tag (``"{jobs}"``), and the derived
names (``"{jobs}:dead"``) follow.
"""

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from greenworks.exceptions import invalid_argument

__all__ = [
    "SEND_DEDUPE",
    "Health",
    "Malformed",
    "Wire",
    "check_json",
    "decode",
    "decode_entries",
    "encode_payload",
    "import_redis",
    "make_client",
    "text",
]

#: Field names of a message entry.
TASK = "task"
PAYLOAD = "payload"
#: Longest error text or traceback kept in Redis (characters).
MAX_ERROR_TEXT = 4000

# KEYS: stream, dedupe key. ARGV: ttl ms, maxlen ('' for none), then the fields.
SEND_DEDUPE = """
local previous = redis.call('GET', KEYS[2])
if previous then return {0, previous} end
local id
if ARGV[2] == '' then
  id = redis.call('XADD', KEYS[1], '*', ARGV[3], ARGV[4], ARGV[5], ARGV[6])
else
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', ARGV[3], ARGV[4], ARGV[5], ARGV[6])
end
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {1, id}
"""

# KEYS: stream. ARGV: group, consumer, idle ms, then pairs (id, retry count or '' to keep it).
# Resets the idle time (and sets the delivery count) of each id this consumer
# still owns. Returns {kept, gone}: gone ids were deleted from the stream
# (trimmed); ids in neither list belong to somebody else now, or were acked.
_TOUCH = """
local kept, gone = {}, {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] and p[1][2] == ARGV[2] then
    local claimed
    if ARGV[i + 1] == '' then
      claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', ARGV[3], 'JUSTID')
    else
      claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', ARGV[3],
                           'RETRYCOUNT', ARGV[i + 1], 'JUSTID')
    end
    if claimed[1] then kept[#kept + 1] = id else gone[#gone + 1] = id end
  end
end
return {kept, gone}
"""

# KEYS: stream. ARGV: group, consumer, min idle ms, start id, count.
# XAUTOCLAIM, plus the delivery count of each claimed entry (XAUTOCLAIM
# increments it but does not say it). Returns {cursor, entries, deleted, counts}.
_CLAIM = """
local res = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local counts = {}
for i, entry in ipairs(res[2]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
  counts[i] = p[1] and p[1][4] or 0
end
return {res[1], res[2], res[3] or {}, counts}
"""

# KEYS: stream. ARGV: group, consumer, bump (1: count this delivery, 0: do not), then ids.
# Fetches entries pending to this consumer that it does not hold (the reply of
# a read lost in an outage; what an earlier process of the same name left).
# Returns {entries, counts}; deleted entries are dropped from the PEL by XCLAIM.
_ADOPT = """
local entries, counts = {}, {}
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    local count = p[1][4] + tonumber(ARGV[3])
    local e = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'RETRYCOUNT', count)
    if e[1] then
      entries[#entries + 1] = e[1]
      counts[#counts + 1] = count
    end
  end
end
return {entries, counts}
"""

# KEYS: stream, dead-letter stream, errors hash. ARGV: group, consumer, id, then the dead letter's fields.
# Returns the dead letter's id, or false when the consumer no longer owns the message.
_DEAD_LETTER = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not p[1] or p[1][2] ~= ARGV[2] then return false end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
local dead = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
return dead
"""

# KEYS: stream. ARGV: group, min idle ms, the caller's own name.
# Deletes consumers that hold nothing and were idle that long; the check and
# the delete are one step, so a consumer that just read something is kept.
_PRUNE = """
local removed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['name'] ~= ARGV[3] and info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) then
    local left = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, info['name'])
    if not left[1] then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
      removed[#removed + 1] = info['name']
    end
  end
end
return removed
"""


def import_redis() -> Any:
    """Return the redis module, or raise ImportError saying which extra to install."""
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - redis-py is a test requirement
        raise ImportError("greenworks.streams needs redis-py: pip install 'greenworks[redis]'") from exc
    return redis


def make_client(url_or_client: Any, argument: str = "url_or_client") -> Any:
    """Return a redis client: *url_or_client* itself, or one built from a ``redis://`` URL.

    A client built here has 5-second socket timeouts (a blocked read waits
    one second, so this never fires on a healthy server) and retries a
    failed command once at once, so that the first command on a pooled
    connection that a server restart closed does not count as an outage.

    :raises InvalidArgument: naming *argument*, for anything else.
    """
    redis = import_redis()
    if isinstance(url_or_client, str):
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:
            return redis.Redis.from_url(
                url_or_client,
                socket_timeout=5.0,
                socket_connect_timeout=5.0,
                retry=Retry(NoBackoff(), 1),
                # RESP2: redis-py 8 defaults to RESP3 with maintenance
                # notifications, which parse slower and are not needed here.
                protocol=2,
            )
        except ValueError as exc:
            raise invalid_argument(argument, url_or_client, "a redis:// URL (%s)" % exc) from None
    if callable(getattr(url_or_client, "xadd", None)) and callable(
        getattr(url_or_client, "register_script", None)
    ):
        return url_or_client
    raise invalid_argument(argument, url_or_client, "a redis.Redis client or a redis:// URL")


def text(value: Any) -> Any:
    """Return *value* as a str if it is bytes (clients with and without ``decode_responses``)."""
    return value.decode() if isinstance(value, bytes) else value


# -- JSON ---------------------------------------------------------------------

_JSON_SCALARS = (str, int, bool, type(None))
_JSON_EXPECTED = (
    "JSON-serialisable (str, int, finite float, bool, None,"
    " and lists, tuples or dicts with str keys of those)"
)


def check_json(value: Any, where: str) -> None:
    """Raise `InvalidArgument` naming *where* (e.g. ``args[1]['when']``) unless JSON carries *value*.

    Refused, because they would not come back as they were sent: objects of
    any other type, NaN and infinities, dicts with non-str keys, and
    containers that contain themselves. Tuples are accepted and arrive as lists.
    """
    _check(value, where, set())


def _check(value: Any, where: str, seen: set[int]) -> None:
    kind = type(value)
    if kind in _JSON_SCALARS:
        return
    if kind is float:
        if not math.isfinite(value):
            raise invalid_argument(where, value, _JSON_EXPECTED + "; NaN and infinities are not JSON")
        return
    if kind is list or kind is tuple or kind is dict:
        if id(value) in seen:
            raise invalid_argument(where, value, _JSON_EXPECTED + "; it contains itself")
        seen.add(id(value))
        if kind is dict:
            for key, item in value.items():
                if type(key) is not str:
                    raise invalid_argument(
                        "%s key %r" % (where, key), key, "a str (JSON object keys are strings)"
                    )
                _check(item, "%s[%r]" % (where, key), seen)
        else:
            for index, item in enumerate(value):
                _check(item, "%s[%d]" % (where, index), seen)
        seen.discard(id(value))
        return
    raise invalid_argument(where, value, _JSON_EXPECTED)


def encode_payload(args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """Return the payload field for ``handler(*args, **kwargs)``.

    :raises InvalidArgument: naming the offending argument (``args[0]``,
        ``kwargs['user']``...) for what JSON cannot carry.
    """
    for index, arg in enumerate(args):
        _check(arg, "args[%d]" % index, set())
    for key, arg in kwargs.items():
        _check(arg, "kwargs[%r]" % key, set())
    return json.dumps({"args": args, "kwargs": kwargs}, separators=(",", ":"), allow_nan=False)


class Malformed(Exception):
    """A stream entry that is not a greenworks message; the text says what is wrong."""


def decode(fields: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """Return ``(task, args, kwargs)`` of an entry's *fields* (a dict of bytes or str).

    :raises Malformed: saying what is missing or wrong.
    """
    if not fields:
        raise Malformed("the entry has no fields")
    task = fields.get(b"task")
    if task is None:
        task = fields.get("task")
    payload = fields.get(b"payload")
    if payload is None:
        payload = fields.get("payload")
    if task is None or payload is None:
        raise Malformed(
            "not a greenworks message: fields %s, expected task and payload" % sorted(map(text, fields))
        )
    try:
        # A str skips json's encoding detection, a fifth of its time here.
        body = json.loads(payload.decode() if type(payload) is bytes else payload)
        args, kwargs = body["args"], body["kwargs"]
        if type(args) is not list or type(kwargs) is not dict:
            raise TypeError("args must be a list and kwargs an object")
    except (ValueError, TypeError, KeyError) as exc:
        raise Malformed(
            'payload is not {"args": [...], "kwargs": {...}}: %s: %s' % (type(exc).__name__, exc)
        ) from None
    return text(task), tuple(args), kwargs


def decode_entries(
    entries: Iterable[tuple[Any, Any]],
) -> list[tuple[str, str, tuple[Any, ...], Any, Any, Any]]:
    """Decode ``(id, fields)`` entries into ``(id, task, args, kwargs, problem, fields)``.

    *problem* is None for a greenworks message, else why it is not one
    (then task is "" and the arguments empty). The loop is the consumer's
    hot path: bytes fields (this module's clients) take the short way,
    anything else goes through :func:`decode`.
    """
    decoded: list[tuple[str, str, tuple[Any, ...], Any, Any, Any]] = []
    append = decoded.append
    loads = json.loads
    for message_id, fields in entries:
        if type(message_id) is bytes:
            message_id = message_id.decode()
        if fields:
            task, payload = fields.get(b"task"), fields.get(b"payload")
            if task is not None and payload is not None:
                try:
                    body = loads(payload.decode())
                    args, kwargs = body["args"], body["kwargs"]
                    if type(args) is list and type(kwargs) is dict:
                        append((message_id, task.decode(), tuple(args), kwargs, None, fields))
                        continue
                except (ValueError, TypeError, KeyError, AttributeError):
                    pass  # decode() says what is wrong
        try:
            task, args, kwargs = decode(fields)
            append((message_id, task, args, kwargs, None, fields))
        except Malformed as exc:
            append((message_id, "", (), {}, "malformed message: %s" % exc, fields))
    return decoded


# -- the commands -------------------------------------------------------------


class Wire:
    """The stream commands of one consumer group, for one consumer; see the module docstring.

    :param client: a redis client.
    :param str stream: the stream's key.
    :param str group: the consumer group.
    :param str dead_letter: the dead-letter stream's key.
    """

    __slots__ = ("client", "stream", "group", "dead_letter", "errors", "_scripts")

    def __init__(self, client: Any, stream: str, group: str, dead_letter: str) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.dead_letter = dead_letter
        #: A hash of the last error of each message that failed and waits for a retry.
        self.errors = "%s:errors:%s" % (stream, group)
        self._scripts = {
            name: client.register_script(source)
            for name, source in (
                ("touch", _TOUCH),
                ("claim", _CLAIM),
                ("adopt", _ADOPT),
                ("dead", _DEAD_LETTER),
                ("prune", _PRUNE),
            )
        }

    def ensure_group(self) -> bool:
        """Create the group (and the stream) unless it exists; True if it was created.

        A new group starts at the beginning of the stream ("0"), so
        messages sent before the first consumer started are handled too.
        """
        redis = import_redis()
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return False
        return True

    def read(
        self, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, str, tuple[Any, ...], Any, Any, Any]]:
        """``XREADGROUP ... >``: up to *count* new messages, waiting *block_ms*; see `decode_entries`."""
        reply = self.client.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count, block=block_ms)
        if not reply:
            return []
        # RESP2 gives [[stream, entries]], RESP3 {stream: [entries]}.
        if isinstance(reply, dict):
            return decode_entries([entry for value in reply.values() for entry in value[0]])
        return decode_entries(reply[0][1])

    def claim(
        self, consumer: str, min_idle_ms: int, start: str, count: int
    ) -> tuple[str, list[tuple[Any, Any, int]], list[str]]:
        """``XAUTOCLAIM`` up to *count* entries idle for *min_idle_ms* from *start*.

        :return: ``(next cursor, [(id, fields or None, delivery count)], [deleted ids])``.
        """
        cursor, entries, deleted, counts = self._scripts["claim"](
            keys=[self.stream], args=[self.group, consumer, min_idle_ms, start, count]
        )
        claimed = []
        for entry, delivered in zip(entries, counts, strict=True):
            message_id, flat = entry[0], entry[1] if len(entry) > 1 else None
            fields = None if not flat else dict(zip(flat[::2], flat[1::2], strict=True))
            claimed.append((text(message_id), fields, int(delivered)))
        return text(cursor), claimed, [text(i) for i in deleted]

    def adopt(self, consumer: str, ids: Sequence[str], bump: bool) -> list[tuple[str, Any, int]]:
        """Fetch *ids*, pending to *consumer*, with their fields; *bump* counts this as a delivery.

        :return: ``[(id, fields, delivery count)]`` of those still pending to it.
        """
        if not ids:
            return []
        entries, counts = self._scripts["adopt"](
            keys=[self.stream], args=[self.group, consumer, int(bump), *ids]
        )
        adopted = []
        for entry, count in zip(entries, counts, strict=True):
            flat = entry[1] if len(entry) > 1 else None
            fields = None if not flat else dict(zip(flat[::2], flat[1::2], strict=True))
            adopted.append((text(entry[0]), fields, int(count)))
        return adopted

    def touch(
        self, consumer: str, pairs: Iterable[tuple[str, int | None]], idle_ms: int = 0
    ) -> tuple[set[str], set[str]]:
        """Reset the idle time to *idle_ms* (and set the delivery count) of ids this consumer owns.

        :param pairs: ``(id, new delivery count or None to keep it)``.
        :return: ``(kept ids, ids deleted from the stream)``.
        """
        args: list[Any] = [self.group, consumer, idle_ms]
        for message_id, count in pairs:
            args.append(message_id)
            args.append("" if count is None else count)
        if len(args) == 3:
            return set(), set()
        kept, gone = self._scripts["touch"](keys=[self.stream], args=args)
        return {text(i) for i in kept}, {text(i) for i in gone}

    def pending_of(self, consumer: str, count: int) -> list[tuple[str, int]]:
        """``XPENDING``: up to *count* ``(id, delivery count)`` this consumer owns."""
        rows = self.client.xpending_range(self.stream, self.group, "-", "+", count, consumername=consumer)
        return [(text(row["message_id"]), int(row["times_delivered"])) for row in rows]

    def ack(self, ids: Sequence[str], forget_errors: Sequence[str]) -> None:
        """``XACK`` *ids*, and drop the recorded errors of *forget_errors*, in one round trip."""
        if not forget_errors:
            self.client.xack(self.stream, self.group, *ids)  # the common case: no pipeline to build
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(self.errors, *forget_errors)
        pipe.xack(self.stream, self.group, *ids)
        pipe.execute()

    def record_error(self, message_id: str, error: str) -> None:
        """Keep *error* as the last error of *message_id* (read back if its last delivery is lost)."""
        self.client.hset(self.errors, message_id, error[:MAX_ERROR_TEXT])

    def last_error(self, message_id: str) -> str | None:
        """Return the recorded last error of *message_id*, or None."""
        value = self.client.hget(self.errors, message_id)
        return None if value is None else text(value)

    def forget_errors(self, ids: Sequence[str]) -> None:
        """Drop the recorded errors of *ids*."""
        if ids:
            self.client.hdel(self.errors, *ids)

    def dead_letter_message(self, consumer: str, message_id: str, fields: dict[str, Any]) -> str | None:
        """Move *message_id* to the dead-letter stream with *fields*, and ack it; atomically.

        :return: the dead letter's id, or None when this consumer no longer
            owns the message (another consumer took it over, or it was acked).
        """
        args: list[Any] = [self.group, consumer, message_id]
        for key, value in fields.items():
            args.append(key)
            args.append(value)
        dead = self._scripts["dead"](keys=[self.stream, self.dead_letter, self.errors], args=args)
        return None if dead is None else text(dead)

    def prune(self, consumer: str, min_idle_ms: int) -> list[str]:
        """Forget consumers that own nothing and were idle *min_idle_ms*; return their names."""
        removed = self._scripts["prune"](keys=[self.stream], args=[self.group, min_idle_ms, consumer])
        return [text(name) for name in removed]

    def group_info(self) -> dict[str, Any] | None:
        """``XINFO GROUPS``: the entry of this group (str keys, plain values), or None."""
        for info in self.client.xinfo_groups(self.stream):
            info = {text(key): text(value) for key, value in info.items()}
            if info.get("name") == self.group:
                return info
        return None

    def length(self) -> int:
        """``XLEN`` of the stream."""
        return int(self.client.xlen(self.stream))


class Health:
    """Whether Redis answers one consumer: each outage said once, and shown in its snapshot.

    :param life: the consumer's `Lifecycle` (its name, logger, clock and events).
    """

    __slots__ = ("life", "since", "outages", "last_error", "group_lost", "recovered", "_redis", "_reported")

    def __init__(self, life: Any) -> None:
        self.life = life
        #: POSIX time the current outage began, or None while Redis answers.
        self.since: float | None = None
        self.outages = 0
        self.last_error: str | None = None
        #: Set when Redis said NOGROUP: the reader recreates the group and clears it.
        self.group_lost = True
        #: Set when an outage ended (and at first): the keeper adopts what reads lost meanwhile.
        self.recovered = True
        self._redis = import_redis()
        self._reported: set[tuple[str, str]] = set()

    def failed(self, where: str, exc: BaseException) -> None:
        """Record that a command failed; the caller backs off and tries again.

        Logs an outage (connection error or timeout) once, at its start; a
        lost group once; any other error (a misconfiguration such as a
        stream key of the wrong type) once per place and kind, with its
        traceback.
        """
        from greenworks.events import StreamDisconnected

        life = self.life
        error = "%s: %s" % (type(exc).__name__, exc)
        self.last_error = "%s (%s)" % (error, where)
        if "NOGROUP" in str(exc):
            if not self.group_lost:
                life.logger.warning(
                    "stream consumer %r: its group is gone (Redis lost its data?); recreating it", life.name
                )
            self.group_lost = True
            return
        if isinstance(exc, (self._redis.ConnectionError, self._redis.TimeoutError)):
            if self.since is None:
                self.since = life.clock.time()
                self.outages += 1
                life.logger.warning(
                    "stream consumer %r: Redis unreachable (%s); retrying with backoff, nothing is lost",
                    life.name,
                    error,
                )
                life.emit(StreamDisconnected, error)
            return
        key = (where, type(exc).__name__)
        if key not in self._reported:
            self._reported.add(key)
            life.logger.error(
                "stream consumer %r: Redis refused %s: %s", life.name, where, error, exc_info=exc
            )

    def ok(self) -> None:
        """Record that a command succeeded: ends an outage (said once). Cheap when none."""
        since = self.since
        if since is not None:
            from greenworks.events import StreamReconnected

            self.since = None
            self.recovered = True
            seconds = max(0.0, self.life.clock.time() - since)
            self.life.logger.info(
                "stream consumer %r: Redis reachable again after %.1fs", self.life.name, seconds
            )
            self.life.emit(StreamReconnected, seconds)
