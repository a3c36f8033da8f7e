"""
`RedisMembership`: the live members of a group, and task leases tied to a member's session.

Everything one member does in a heartbeat is one Lua script, so one round
trip whatever the number of tasks:

- keep its *session* alive (``ZADD members <now + ttl> <member>``; the
  session id is in ``sessions[member]``), forget members whose session
  expired, and answer the live members;
- release the task leases it gives up (``HDEL leases <key>`` while the lease
  still names its session);
- claim task leases: a key is granted when it has no lease, or its lease
  names a session that is no longer alive; the grant takes the next fencing
  token of the group (``INCR fence``) and stores ``"<token> <session>
  <member>"`` in ``leases[key]``.

A lease has no expiry of its own: it is valid while the session it names is
alive, so renewing the session renews every lease at once. All keys of a
group share one hash tag (``greenworks:cluster:{<group>}:...``), so the
script also runs on Redis Cluster.

Two safety rules live in the script, because only the server can apply them
atomically:

- A beat of a session the server no longer knows (expired, left, or lost
  with the data) answers *lapsed* and changes nothing; the member must stop
  what it runs and join again with a new session.
- After Redis lost its data (and on a group's very first use) nothing is
  granted for one ttl (*quiet*): a member that still runs the tasks of a
  session the server forgot has stopped them by then (it stops them before
  its session could have expired), so no task ever has two owners.
"""

import logging
import os
import re
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from greenworks import _checks
from greenworks.coordination._common import BackendHealth
from greenworks.coordination._redis import FENCE_LUA, _import_redis, client_from_url
from greenworks.coordination._registry import Registration, connection_spec, registry_dir
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IMembership

__all__ = ["MembershipBeat", "RedisMembership", "release_member"]

logger = logging.getLogger(__name__)

_NO_SPACE = re.compile(r"^\S+$")

_BEAT = (
    FENCE_LUA
    + """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local members, sessions, leases = KEYS[1], KEYS[2], KEYS[3]
local me, session, mode = ARGV[1], ARGV[2], ARGV[3]
local ttl, previous, nclaims = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local first_release = 7 + nclaims

local function alive(owner, owner_session)
    if redis.call('hget', sessions, owner) ~= owner_session then return false end
    local score = redis.call('zscore', members, owner)
    return score ~= false and tonumber(score) > now
end

local function parse(value)
    return string.match(value, '^(%d+) (%S+) (.*)$')
end

local function release()
    for i = first_release, #ARGV do
        local value = redis.call('hget', leases, ARGV[i])
        if value then
            local _, s, owner = parse(value)
            if owner == me and s == session then redis.call('hdel', leases, ARGV[i]) end
        end
    end
end

local live = alive(me, session)
if mode == 'leave' then
    if redis.call('hget', sessions, me) == session then
        release()
        redis.call('zrem', members, me)
        redis.call('hdel', sessions, me)
        return {1}
    end
    return {0}
end
if mode == 'beat' and not live then return {0} end
if mode == 'join' then
    local current = redis.call('hget', sessions, me)
    -- Another live session with our member id is a second process using the
    -- same member=, unless it is our own previous session (we stopped its
    -- tasks before joining again).
    if current and current ~= session and current ~= previous and alive(me, current) then return {2} end
    redis.call('hset', sessions, me, session)
end
redis.call('zadd', members, string.format('%.0f', now + ttl), me)
local dead = redis.call('zrangebyscore', members, '-inf', string.format('%.0f', now))
for _, m in ipairs(dead) do
    redis.call('zrem', members, m)
    redis.call('hdel', sessions, m)
end

local epoch = redis.call('get', KEYS[5])
if not epoch then
    epoch = now
    redis.call('set', KEYS[5], string.format('%.0f', now))
else
    epoch = tonumber(epoch)
end
local quiet = epoch + ttl - now
if quiet < 0 then quiet = 0 end

release()
local tokens = {}
for i = 7, 6 + nclaims do
    local key = ARGV[i]
    local token = 0
    if quiet == 0 then
        local value = redis.call('hget', leases, key)
        local free = true
        if value then
            local tok, s, owner = parse(value)
            if owner == me and s == session then
                token = tonumber(tok)
                free = false
            elseif tok and alive(owner, s) then
                free = false
            end
        end
        if free then
            token = next_token(KEYS[4])
            redis.call('hset', leases, key, string.format('%.0f', token) .. ' ' .. session .. ' ' .. me)
        end
    end
    tokens[#tokens + 1] = token
end

-- A bounded sweep of leases whose session is dead (tasks nobody wants any
-- more): the hash does not grow for ever, and the cost per beat is flat.
local scan = redis.call('hscan', leases, redis.call('get', KEYS[6]) or '0', 'COUNT', 32)
redis.call('set', KEYS[6], scan[1])
local entries = scan[2]
for i = 1, #entries, 2 do
    local tok, s, owner = parse(entries[i + 1])
    if not tok or not alive(owner, s) then redis.call('hdel', leases, entries[i]) end
end
return {1, redis.call('zrangebyscore', members, '(' .. string.format('%.0f', now), '+inf'), tokens, quiet}
"""
)

_STATUS = {0: "lapsed", 1: "ok", 2: "conflict"}


@dataclass(frozen=True)
class MembershipBeat:
    """What one `RedisMembership.beat` answered.

    :ivar str status: ``"ok"``; ``"lapsed"`` (the server does not know the
        session: stop everything, join again with a new one); ``"conflict"``
        (another live session uses this member id: a second process with the
        same ``member=``).
    :ivar tuple members: the live members, sorted (``ok`` only).
    :ivar tuple tokens: one per claim: its fencing token, or 0 when refused.
    :ivar float quiet: seconds before grants resume (after a data loss), else 0.
    """

    status: str
    members: tuple[str, ...] = ()
    tokens: tuple[int, ...] = ()
    quiet: float = 0.0


def _keys(group: str) -> list[str]:
    prefix = "greenworks:cluster:{%s}:" % group
    return [prefix + name for name in ("members", "sessions", "leases", "fence", "epoch", "sweep")]


def _default_member() -> str:
    return "%s:%d:%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])


@implementer(IMembership)
class RedisMembership:
    """Default implementation of `IMembership` over Redis (extra ``redis``).

    Passive: it spawns nothing. Whoever owns it (a `ClusterRunner`) calls
    :meth:`beat` every :attr:`heartbeat` seconds and :meth:`leave` when it
    stops. Each call is one round trip (it may switch greenlets, bounded by
    the client's socket timeout); a Redis error is never raised: the call
    answers None / False, the error is kept in :attr:`last_error` and the
    outage is logged once when it starts and once when it ends.

    Every member of a group must use the same *ttl*.

    :param url_or_client: a ``redis://`` URL (a client is built with socket
        timeouts of ``min(ttl / 4, 5)`` s and no retries, so a beat never
        outlasts the margin the runner keeps before its leases could expire)
        or a ready ``redis.Redis`` client.
    :param str group: the group's name (no whitespace, no braces).
    :keyword float ttl: seconds a member lives without a beat (default 5).
    :keyword float heartbeat: seconds between beats (default ``ttl / 3``;
        at most ``ttl / 2``).
    :keyword str member: this member's id (no whitespace); default
        ``host:pid:<random suffix>``, made afresh in a forked child.
    :keyword lease_registry: the per-host registry `release_dead` reads (see
        `greenworks.coordination.release_dead`); ``False``: none.
    :raises InvalidArgument: for a bad argument, naming it.
    :raises ImportError: redis-py is not installed.
    """

    def __init__(
        self,
        url_or_client: Any,
        group: str,
        *,
        ttl: float = 5.0,
        heartbeat: float | None = None,
        member: str | None = None,
        lease_registry: Any = None,
        logger: logging.Logger | None = None,
    ) -> None:
        redis = _import_redis()
        _checks.name("group", group)
        if not _NO_SPACE.match(group) or "{" in group or "}" in group:
            raise invalid_argument("group", group, "a name without whitespace or braces")
        self._ttl: float = _checks.seconds("ttl", ttl, positive=True)
        if heartbeat is None:
            heartbeat = self._ttl / 3.0
        self._heartbeat: float = _checks.seconds("heartbeat", heartbeat, positive=True)
        if self._heartbeat > self._ttl / 2.0:
            raise invalid_argument("heartbeat", heartbeat, "at most ttl / 2 (%r s)" % (self._ttl / 2.0))
        if member is not None and (not isinstance(member, str) or not _NO_SPACE.match(member)):
            raise invalid_argument("member", member, "a non-empty str without whitespace, or None")
        if isinstance(url_or_client, str):
            client = client_from_url(redis, url_or_client, min(self._ttl / 4.0, 5.0))
        elif callable(getattr(url_or_client, "register_script", None)):
            client = url_or_client
        else:
            raise invalid_argument("url_or_client", url_or_client, "a redis.Redis client or a redis:// URL")
        self._redis = redis
        self._client = client
        self._group = group
        self._keys = _keys(group)
        self._script = client.register_script(_BEAT)
        self._fixed_member = member
        self._pid = os.getpid()
        self._member = member or _default_member()
        self._members: tuple[str, ...] = ()
        self._logger = logger or logging.getLogger(__name__)
        self._health = BackendHealth("membership %s of %s" % (self._member, group), self._logger)
        self._registry = registry_dir(lease_registry)
        self._registration = Registration(self._registry, uuid.uuid4().hex[:12], self._logger)

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._member = self._fixed_member or _default_member()
            self._members = ()
            self._registration = Registration(self._registry, uuid.uuid4().hex[:12], self._logger)

    # -- reading -------------------------------------------------------------

    @property
    def group(self) -> str:
        return self._group

    @property
    def member(self) -> str:
        self._check_fork()
        return self._member

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def heartbeat(self) -> float:
        return self._heartbeat

    @property
    def members(self) -> tuple[str, ...]:
        return self._members

    @property
    def last_error(self) -> BaseException | None:
        return self._health.last_error

    @property
    def failing_since(self) -> float | None:
        """``time.time()`` when the current outage began, or None."""
        return self._health.failing_since

    # -- the round trips -----------------------------------------------------

    def beat(
        self,
        session: str,
        join: bool,
        claims: Sequence[str] = (),
        releases: Iterable[str] = (),
        previous: str | None = None,
    ) -> MembershipBeat | None:
        """One script call: renew (or start) *session*, release, claim; see `IMembership.beat`.

        :param str previous: with *join*, this member's own earlier session,
            which the join may replace while it is still alive (its tasks were
            stopped first); any other live session of the member id is a
            ``conflict``.
        """
        self._check_fork()
        claims = list(claims)
        args: list[Any] = [self._member, session, "join" if join else "beat", max(1, round(self._ttl * 1000))]
        args.append(previous or "")
        args.append(len(claims))
        args.extend(claims)
        args.extend(releases)
        reply = self._call(args, "beat")
        if reply is None:
            return None
        status = _STATUS.get(int(reply[0]), "lapsed")
        if status != "ok":
            return MembershipBeat(status)
        members = tuple(sorted(m.decode() if isinstance(m, bytes) else m for m in reply[1]))
        self._members = members
        if join:
            spec = connection_spec(self._client)
            if spec is not None:
                self._registration.write(
                    {
                        "kind": "member",
                        "key": self._keys[0],
                        "group": self._group,
                        "member": self._member,
                        "session": session,
                        "redis": spec,
                    }
                )
        return MembershipBeat(status, members, tuple(int(t) for t in reply[2]), int(reply[3]) / 1000.0)

    def leave(self, session: str, releases: Iterable[str] = ()) -> bool:
        """End *session* at once (its leases are free now); see `IMembership.leave`."""
        self._check_fork()
        args: list[Any] = [self._member, session, "leave", max(1, round(self._ttl * 1000)), "", 0, *releases]
        reply = self._call(args, "leave")
        self._registration.remove()
        self._members = ()
        return reply is not None

    def _call(self, args: list[Any], action: str) -> Any:
        try:
            reply = self._script(keys=self._keys, args=args)
        except (self._redis.RedisError, OSError) as exc:
            self._health.failed(exc, action)
            return None
        self._health.ok()
        return reply

    def __repr__(self) -> str:
        return "<RedisMembership %s in %s ttl=%s>" % (self._member, self._group, self._ttl)


def release_member(client: Any, entry: dict[str, Any]) -> int:
    """End the session a registry *entry* names (for `release_dead`); return 1 if it was still there."""
    keys = _keys(entry["group"])
    reply = client.eval(_BEAT, len(keys), *keys, entry["member"], entry["session"], "leave", 1, "", 0)
    return int(reply[0])
