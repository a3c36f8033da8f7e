"""
`RedisLock`: a leader lock shared by processes on many hosts, as a Redis lease.

Needs redis-py (``pip install greenworks[redis]``); it is imported when a
`RedisLock` is built, not when this package is imported.
"""

import logging
import os
import socket
from typing import Any

import gevent
from gevent.event import Event
from zope.interface import implementer

from greenworks import _greenlets
from greenworks.clock import get_clock
from greenworks.coordination._common import BackendHealth, ClaimResult, check_ttl, new_holder_id
from greenworks.coordination._registry import Registration, connection_spec, pid_gone, registry_dir
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IFencedLock, ILeaderLock

__all__ = ["FENCE_LUA", "RedisLock", "client_from_url"]

logger = logging.getLogger(__name__)

# The fencing counter: INCR, or - when the counter is missing (first use, or
# Redis lost its data) - the server's clock in microseconds, so tokens keep
# increasing across the loss. '%.0f' keeps all digits (tostring would not).
FENCE_LUA = """
local function next_token(key)
    local n = redis.call('incr', key)
    if n == 1 then
        local t = redis.call('time')
        n = tonumber(t[1]) * 1000000 + tonumber(t[2])
        redis.call('set', key, string.format('%.0f', n))
    end
    return n
end
"""

# Acquire: SET NX PX and the fence INCR in one atomic step. A key that holds
# our own id (we set it but lost the reply) is ours: renewed, and its token is
# the counter's value, which no acquisition can have moved since.
_ACQUIRE = (
    FENCE_LUA
    + """
local current = redis.call('get', KEYS[1])
if current == ARGV[1] then
    redis.call('pexpire', KEYS[1], ARGV[2])
    local latest = redis.call('get', KEYS[2])
    if latest then return tonumber(latest) end
    return next_token(KEYS[2])
end
if current then return {0, current} end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return next_token(KEYS[2])
"""
)

# Take over the lease of a holder known to be dead: compare-and-set on *its*
# id (ARGV[3]), so a lease somebody else took meanwhile is never touched, and
# a new token, so the dead holder's claims (were it not dead) are fenced. A
# key gone meanwhile is a free lease, set as _ACQUIRE would: gunicorn's
# master (release_dead, in child_exit) often frees it between our reading
# the dead holder and this script, and giving up then loses the tick.
_TAKE_OVER = (
    FENCE_LUA
    + """
local current = redis.call('get', KEYS[1])
if current and current ~= ARGV[3] then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return next_token(KEYS[2])
"""
)

# Compare-and-set scripts: they act only while the key still holds *our*
# token, so a holder whose lease expired can never extend or delete the lease
# somebody else took meanwhile.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

# The fenced claim: refused (2) when a newer acquisition moved the counter past
# our token, or the counter is gone; else SET NX PX (1 claimed, 0 taken).
_CLAIM = """
if ARGV[3] ~= '' then
    local latest = redis.call('get', KEYS[2])
    if not latest or tonumber(ARGV[3]) < tonumber(latest) then return 2 end
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

_CLAIM_RESULTS = {0: ClaimResult.TAKEN, 1: ClaimResult.CLAIMED, 2: ClaimResult.FENCED}


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise ImportError(
            "greenworks.coordination.RedisLock needs redis-py: pip install 'greenworks[redis]'"
        ) from exc
    return redis


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@implementer(IFencedLock, ILeaderLock)
class RedisLock:
    """Default implementation of `IFencedLock` over Redis, for many hosts.

    :meth:`acquire` is one Lua script: ``SET <name> <holder> NX PX <ttl>``
    and, when that succeeded, ``INCR <name>:fence`` for the new lease's
    :attr:`token`; one round trip, never waits for the lease. The value is
    this instance's :attr:`holder` (``host:pid:nonce``). :meth:`renew` and
    :meth:`release` are Lua compare-and-set scripts that touch the key only
    while it still holds that id. :meth:`claim` is a script too: it refuses
    (``FENCED``) when ``<name>:fence`` moved past this instance's latest
    token, else ``SET <name>:claim:<key> NX PX``, atomically.

    While held, a named greenlet (``greenworks.coordination.redis[<name>]``)
    renews the lease every *renew_interval* (default ``ttl / 3``), whatever
    the caller's own rhythm (a `JobRunner` tick); the first failed renewal
    marks the lease lost and ends the greenlet, as does :meth:`release`. A
    lost lease is taken over by another process within one *ttl*. A holder
    of the same host that died (SIGKILL: its pid gone, a zombie, exiting, or
    with the SIGKILL still pending) is taken over at once: :meth:`acquire`
    finds its registry entry (written at acquire) and replaces its lease by
    compare-and-set on its holder id, with a new token; when gunicorn's
    master freed that lease meanwhile (:func:`release_dead` in
    ``child_exit``, the moment it reaped the process) the same call takes
    the free lease instead of giving up. :func:`release_dead`
    (gunicorn's ``child_exit`` hook) frees it at once too, from a process
    that holds no lock, and serves the holders that nobody contends for
    right away.

    Failure model: a Redis or network error never raises out of
    :meth:`acquire`, :meth:`renew`, :meth:`release` or :meth:`claim`; it is
    read as "not held" / ``ClaimResult.FAILED``, the safe answer (a job is
    skipped, never run twice), kept in :attr:`last_error`, and logged once
    per outage (see `BackendHealth`). :attr:`is_held` also turns False by
    itself once *ttl* passed since the last confirmed renewal, measured from
    before the request was sent, so a process whose hub was blocked longer
    than the lease never believes it still leads. If Redis restarts with
    empty data mid-lease the next renewal finds the key gone and the lease
    is lost; the next acquisition's token starts from the server clock in
    microseconds, above every earlier token, and a stale holder's claims are
    fenced.

    Every method may switch greenlets (a network round trip, bounded by the
    client's socket timeout); none blocks the hub. Works under gevent
    monkey-patching with redis-py's plain synchronous client.

    :param client_or_url: a ``redis.Redis`` client, or a ``redis://`` URL (a
        client is then built with socket timeouts of ``min(ttl / 3, 5)`` s
        and no retries, so a dead server costs one fast failure).
    :param str name: the Redis key of the lease; the counter is
        ``<name>:fence``, claims go to ``<name>:claim:<key>``.
    :param float ttl: default lease in seconds when :meth:`acquire` gets none.
    :param float renew_interval: seconds between automatic renewals
        (default ``ttl / 3``).
    :param lease_registry: the per-host registry directory `release_dead`
        and :meth:`acquire` read (default: ``$GREENWORKS_LEASE_REGISTRY`` or
        ``<tempdir>/greenworks-leases``); ``False`` writes no entry and never
        takes a dead holder's lease over before its ttl.
    :raises InvalidArgument: for a bad *name*, *ttl* or *renew_interval*.
    :raises ImportError: redis-py is not installed.
    """

    def __init__(
        self,
        client_or_url: Any,
        name: str,
        ttl: float = 10.0,
        *,
        renew_interval: float | None = None,
        lease_registry: Any = None,
        clock: Any = None,
        logger: logging.Logger | None = None,
    ) -> None:
        redis = _import_redis()
        if not isinstance(name, str) or not name:
            raise invalid_argument("name", name, "a non-empty str")
        self._ttl = check_ttl("ttl", ttl)
        self._renew_interval = check_ttl("renew_interval", renew_interval, allow_none=True)
        if lease_registry not in (None, False) and not isinstance(lease_registry, (str, os.PathLike)):
            raise invalid_argument("lease_registry", lease_registry, "a directory path, None or False")
        if isinstance(client_or_url, str):
            client = client_from_url(redis, client_or_url, min(self._ttl / 3.0, 5.0))
        elif callable(getattr(client_or_url, "set", None)) and callable(
            getattr(client_or_url, "register_script", None)
        ):
            client = client_or_url
        else:
            raise invalid_argument("client_or_url", client_or_url, "a redis.Redis client or a redis:// URL")
        self._redis = redis
        self._client = client
        self._name = name
        self._fence_key = name + ":fence"
        self._clock = get_clock(clock)
        self._logger = logger or logging.getLogger(__name__)
        self._health = BackendHealth("redis lock %s" % name, self._logger)
        self._acquire_script = client.register_script(_ACQUIRE)
        self._take_over_script = client.register_script(_TAKE_OVER)
        self._renew_script = client.register_script(_RENEW)
        self._release_script = client.register_script(_RELEASE)
        self._claim_script = client.register_script(_CLAIM)
        self._registry_dir = registry_dir(lease_registry)
        self._pid = os.getpid()
        self._new_identity()

    def _new_identity(self) -> None:
        self._holder = new_holder_id()
        self._registration = Registration(self._registry_dir, self._holder.rsplit(":", 1)[1], self._logger)
        self._held = False
        self._token: int | None = None
        self._lease_ttl = self._ttl
        self._valid_until = 0.0
        # True once we may have left our id in Redis (sent an acquire whose
        # outcome we do not know, or held): release() then also deletes it.
        self._maybe_ours = False
        self._renewer = None
        self._stop_renewer = Event()
        # The dead local holder (no registry entry) acquire() asked about a second time.
        self._asked_again: str | None = None

    # -- reading -------------------------------------------------------------

    @property
    def name(self) -> str:
        """The Redis key of the lease."""
        return self._name

    @property
    def holder(self) -> str:
        self._check_fork()
        return self._holder

    @property
    def is_held(self) -> bool:
        self._check_fork()
        return self._held and self._clock.monotonic() < self._valid_until

    @property
    def token(self) -> int | None:
        """The fencing token of the held lease (an int), or None while not held."""
        return self._token if self.is_held else None

    @property
    def last_error(self) -> BaseException | None:
        return self._health.last_error

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            # A forked child is a new contender, never the parent's holder.
            self._pid = os.getpid()
            self._new_identity()

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (self._redis.RedisError, OSError)

    # -- the lease -----------------------------------------------------------

    def acquire(self, ttl: float | None = None) -> bool:
        """Try once to take the lease for *ttl* seconds; see `ILeaderLock.acquire`.

        Already held: renews instead (same token). Held by a dead process of
        this host (see the class doc): taken over, one more round trip (also
        one more when its registry entry is gone, as `release_dead` leaves
        it after freeing the lease: asked again, once per holder id). On
        success the renewal greenlet runs, :attr:`token` is the new lease's
        fencing token, and this process's registry entry names the lease (for
        `release_dead` and the next contenders).

        :param float ttl: seconds; ``None`` uses the constructor's *ttl*.
        :raises InvalidArgument: *ttl* is not a number > 0 (nor None).
        """
        ttl = check_ttl("ttl", ttl, allow_none=True)
        self._check_fork()
        if ttl is None:
            ttl = self._ttl
        if self._held:
            self._lease_ttl = ttl
            return self.renew()
        started = self._clock.monotonic()
        self._maybe_ours = True
        keys = [self._name, self._fence_key]
        dead = None
        try:
            for _attempt in range(2):
                answer = self._acquire_script(keys=keys, args=[self._holder, _ms(ttl)])
                if not isinstance(answer, list):
                    break
                current, has_entry = self._local_gone(answer[1])
                if has_entry:
                    dead = current
                    started = self._clock.monotonic()
                    answer = self._take_over_script(keys=keys, args=[self._holder, _ms(ttl), dead])
                    break
                answer = 0
                # A dead local holder without its entry: release_dead (gunicorn's child_exit, in
                # the master) unlinks it right after freeing the lease, so the key is most likely
                # free by now. Asked once more, once per holder id (a freed id never comes back).
                if current is None or current == self._asked_again:
                    break
                self._asked_again = current
            token = int(answer)
        except self._errors() as exc:
            self._health.failed(exc, "acquire")
            return False
        self._health.ok()
        if not token:
            self._maybe_ours = False
            return False
        self._held = True
        self._token = token
        self._lease_ttl = ttl
        self._valid_until = started + ttl
        if dead is not None:
            self._logger.info(
                "redis lock %s taken over by %s (token %d) from %s, a dead process of this host",
                self._name,
                self._holder,
                token,
                dead,
            )
        else:
            self._logger.info("redis lock %s acquired by %s (token %d)", self._name, self._holder, token)
        spec = connection_spec(self._client)
        if spec is not None:
            self._registration.write(
                {"kind": "lock", "key": self._name, "holder": self._holder, "redis": spec}
            )
        self._start_renewer()
        return True

    def _local_gone(self, current: Any) -> tuple[str | None, bool]:
        """Whether *current* (the key's holder id) names a dead process of this host: (id, entry).

        ``(id, True)``: a dead lock holder of this host, to take over. Dead
        means: its registry entry exists here (so it is a process of this
        host, whatever the host names say, and it held this lease) and its
        pid is gone, or exiting, or has a SIGKILL pending (`pid_gone`); the id
        names this host too (a registry shared across hosts stays safe). Then
        waiting for its ttl, or for gunicorn's ``child_exit`` to run in the
        master after the kernel reaped it, would only lose ticks.
        ``(id, False)``: the same but without a registry entry (never taken
        over: nothing proves it was a process of this host). ``(None,
        False)``: anything else (a live holder, another host's, no registry).
        Never switches greenlets (a few reads under ``/proc``).
        """
        if self._registry_dir is None:
            return None, False
        holder = current.decode("utf-8", "replace") if isinstance(current, bytes) else str(current)
        host, _, rest = holder.rpartition(":")[0].rpartition(":")
        nonce = holder.rpartition(":")[2]
        if host != socket.gethostname() or not rest.isdigit() or int(rest) == os.getpid() or not nonce:
            return None, False
        if not pid_gone(int(rest)):
            return None, False
        entry = os.path.join(self._registry_dir, "%s.%s.json" % (rest, nonce))
        return holder, os.path.exists(entry)

    def renew(self) -> bool:
        """Extend the held lease by its ttl (compare-and-set); see `ILeaderLock.renew`.

        A missing or foreign key, or an error, ends the lease here (False).
        """
        self._check_fork()
        if not self._held:
            return False
        started = self._clock.monotonic()
        try:
            ok = self._renew_script(keys=[self._name], args=[self._holder, _ms(self._lease_ttl)]) == 1
        except self._errors() as exc:
            self._health.failed(exc, "renew")
            self._lose()
            return False
        self._health.ok()
        if not ok:
            self._maybe_ours = False
            self._logger.warning("redis lock %s: lease lost (expired or taken over)", self._name)
            self._lose()
            return False
        self._valid_until = started + self._lease_ttl
        return True

    def _lose(self) -> None:
        self._held = False
        self._stop_renewer.set()

    def release(self) -> None:
        """Delete the lease if it still holds our id; stop the renewal greenlet.

        Idempotent. Waits for the renewal greenlet to finish (at most one
        round trip). Errors are logged; the lease then expires by itself.
        The fence counter is left alone: the next acquisition moves it.
        """
        self._check_fork()
        self._stop_renewer.set()
        renewer, self._renewer = self._renewer, None
        if renewer is not None and renewer is not gevent.getcurrent():
            renewer.join()
        if not self._held and not self._maybe_ours:
            return
        self._held = False
        self._maybe_ours = False
        self._registration.remove()
        try:
            self._release_script(keys=[self._name], args=[self._holder])
        except self._errors() as exc:
            self._health.failed(exc, "release")
            return
        self._health.ok()
        self._logger.info("redis lock %s released by %s", self._name, self._holder)

    def _start_renewer(self) -> None:
        if self._renewer is not None and not self._renewer.dead:
            return
        self._stop_renewer = Event()
        self._renewer = _greenlets.spawn(
            "greenworks.coordination.redis[%s]" % self._name, self._renew_loop, self._stop_renewer
        )

    def _renew_loop(self, stop: Event) -> None:
        pid = os.getpid()
        while True:
            interval = self._renew_interval or self._lease_ttl / 3.0
            if self._clock.wait(stop, interval) or os.getpid() != pid:
                return
            if not self.renew():
                return

    # -- claims --------------------------------------------------------------

    def claim(self, key: str, ttl: float) -> ClaimResult:
        """Claim *key* for *ttl* seconds, fenced by this instance's latest token (one script).

        :return ClaimResult: see `IFencedLock.claim`; ``FENCED`` also drops the lease.
        :raises InvalidArgument: *ttl* is not a number > 0, or *key* is not a str.
        """
        ttl = check_ttl("ttl", ttl)
        if not isinstance(key, str):
            raise invalid_argument("key", key, "a str")
        self._check_fork()
        token = "" if self._token is None else str(self._token)
        try:
            answer = self._claim_script(
                keys=["%s:claim:%s" % (self._name, key), self._fence_key],
                args=[self._holder, _ms(ttl), token],
            )
        except self._errors() as exc:
            self._health.failed(exc, "claim %r" % key)
            return ClaimResult.FAILED
        self._health.ok()
        result = _CLAIM_RESULTS[int(answer)]
        if result is ClaimResult.FENCED and self._held:
            self._logger.warning(
                "redis lock %s: %s is stale (token %d, a newer holder acquired); lease dropped",
                self._name,
                self._holder,
                self._token,
            )
            self._lose()
        return result

    def __repr__(self) -> str:
        return "<RedisLock %s holder=%s held=%s token=%s>" % (
            self._name,
            self._holder,
            self._held,
            self._token,
        )


def client_from_url(redis: Any, url: str, timeout: float) -> Any:
    """Build a redis-py client for *url* with *timeout* s socket timeouts and no retries."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
