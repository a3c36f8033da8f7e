"""
`RedisLock`: a leader lock shared by processes on many hosts, as a Redis lease.

Needs redis-py (``pip install greenworks[redis]``); it is imported when a
`RedisLock` is built, not when this package is imported.
"""

import logging
import os

import gevent
from gevent.event import Event
from zope.interface import implementer

from greenworks import _greenlets
from greenworks.clock import get_clock
from greenworks.coordination._common import check_ttl, new_holder_id
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import ILeaderLock

__all__ = ["RedisLock"]

logger = logging.getLogger(__name__)

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


def _import_redis():
    try:
        import redis
    except ImportError as exc:
        raise ImportError(
            "greenworks.coordination.RedisLock needs redis-py: pip install 'greenworks[redis]'"
        ) from exc
    return redis


def _ms(seconds):
    return max(1, round(seconds * 1000))


@implementer(ILeaderLock)
class RedisLock:
    """Default implementation of `ILeaderLock` over Redis, for many hosts.

    :meth:`acquire` is ``SET <name> <token> NX PX <ttl>``: one round trip,
    never waits for the lease. The token is this instance's :attr:`holder`
    (``host:pid:nonce``). :meth:`renew` and :meth:`release` are Lua
    compare-and-set scripts that touch the key only while it still holds
    that token.

    While held, a named greenlet (``greenworks.coordination.redis[<name>]``)
    renews the lease every *renew_interval* (default ``ttl / 3``); the first
    failed renewal marks the lease lost and ends the greenlet, as does
    :meth:`release`. A lost lease is taken over by another process within one
    *ttl*.

    Failure model: a Redis or network error never raises out of
    :meth:`acquire`, :meth:`renew`, :meth:`release` or :meth:`claim`; it is
    logged and read as "not held" / "not claimed", the safe answer (a job is
    skipped, never run twice). :attr:`is_held` also turns False by itself
    once *ttl* passed since the last confirmed renewal, measured from before
    the request was sent, so a process whose hub was blocked longer than the
    lease never believes it still leads. If Redis restarts with empty data
    mid-lease the next renewal finds the key gone and the lease is lost;
    whoever acquires next leads, and the per-tick claims keep a tick from
    running twice.

    Every method may switch greenlets (a network round trip, bounded by the
    client's socket timeout); none blocks the hub. Works under gevent
    monkey-patching with redis-py's plain synchronous client.

    :param client_or_url: a ``redis.Redis`` client, or a ``redis://`` URL (a
        client is then built with socket timeouts of ``min(ttl / 3, 5)`` s
        and no retries, so a dead server costs one fast failure).
    :param str name: the Redis key of the lease; claims go to ``<name>:claim:<key>``.
    :param float ttl: default lease in seconds when :meth:`acquire` gets none.
    :param float renew_interval: seconds between automatic renewals
        (default ``ttl / 3``).
    :raises InvalidArgument: for a bad *name*, *ttl* or *renew_interval*.
    :raises ImportError: redis-py is not installed.
    """

    def __init__(self, client_or_url, name, ttl=10.0, *, renew_interval=None, clock=None, logger=None):
        redis = _import_redis()
        if not isinstance(name, str) or not name:
            raise invalid_argument("name", name, "a non-empty str")
        self._ttl = check_ttl("ttl", ttl)
        self._renew_interval = check_ttl("renew_interval", renew_interval, allow_none=True)
        if isinstance(client_or_url, str):
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            timeout = min(self._ttl / 3.0, 5.0)
            client = redis.Redis.from_url(
                client_or_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
        elif callable(getattr(client_or_url, "set", None)) and callable(
            getattr(client_or_url, "register_script", None)
        ):
            client = client_or_url
        else:
            raise invalid_argument("client_or_url", client_or_url, "a redis.Redis client or a redis:// URL")
        self._redis = redis
        self._client = client
        self._name = name
        self._clock = get_clock(clock)
        self._logger = logger or logging.getLogger(__name__)
        self._renew_script = client.register_script(_RENEW)
        self._release_script = client.register_script(_RELEASE)
        self._pid = os.getpid()
        self._holder = new_holder_id()
        self._held = False
        self._lease_ttl = self._ttl
        self._valid_until = 0.0
        # True once we may have left our token in Redis (set it and then lost
        # track after an error): acquire() then also checks for it.
        self._maybe_ours = False
        self._renewer = None
        self._stop_renewer = Event()

    # -- reading -------------------------------------------------------------

    @property
    def name(self):
        """The Redis key of the lease."""
        return self._name

    @property
    def holder(self):
        self._check_fork()
        return self._holder

    @property
    def is_held(self):
        self._check_fork()
        return self._held and self._clock.monotonic() < self._valid_until

    def _check_fork(self):
        pid = os.getpid()
        if pid != self._pid:
            # A forked child is a new contender, never the parent's holder.
            self._pid = pid
            self._holder = new_holder_id()
            self._held = False
            self._maybe_ours = False
            self._renewer = None
            self._stop_renewer = Event()

    def _errors(self):
        return (self._redis.RedisError, OSError)

    # -- the lease -----------------------------------------------------------

    def acquire(self, ttl=None):
        """Try once to take the lease for *ttl* seconds; see `ILeaderLock.acquire`.

        Already held: renews instead. On success the renewal greenlet runs.

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
        try:
            got = self._client.set(self._name, self._holder, nx=True, px=_ms(ttl))
            if not got and self._maybe_ours:
                got = self._renew_script(keys=[self._name], args=[self._holder, _ms(ttl)]) == 1
        except self._errors():
            self._logger.warning("redis lock %s: acquire failed", self._name, exc_info=True)
            return False
        self._maybe_ours = bool(got)
        if not got:
            return False
        self._held = True
        self._lease_ttl = ttl
        self._valid_until = started + ttl
        self._logger.info("redis lock %s acquired by %s", self._name, self._holder)
        self._start_renewer()
        return True

    def renew(self):
        """Extend the held lease by its ttl (compare-and-set); see `ILeaderLock.renew`.

        A missing or foreign key, or an error, ends the lease here (False).
        """
        self._check_fork()
        if not self._held:
            return False
        started = self._clock.monotonic()
        try:
            ok = self._renew_script(keys=[self._name], args=[self._holder, _ms(self._lease_ttl)]) == 1
        except self._errors():
            self._logger.warning("redis lock %s: renew failed; lease lost", self._name, exc_info=True)
            self._lose()
            return False
        if not ok:
            self._maybe_ours = False
            self._logger.warning("redis lock %s: lease lost (expired or taken over)", self._name)
            self._lose()
            return False
        self._valid_until = started + self._lease_ttl
        return True

    def _lose(self):
        self._held = False
        self._stop_renewer.set()

    def release(self):
        """Delete the lease if it still holds our token; stop the renewal greenlet.

        Idempotent. Waits for the renewal greenlet to finish (at most one
        round trip). Errors are logged; the lease then expires by itself.
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
        try:
            self._release_script(keys=[self._name], args=[self._holder])
        except self._errors():
            self._logger.warning("redis lock %s: release failed; it will expire", self._name, exc_info=True)
            return
        self._logger.info("redis lock %s released by %s", self._name, self._holder)

    def _start_renewer(self):
        if self._renewer is not None and not self._renewer.dead:
            return
        self._stop_renewer = Event()
        self._renewer = _greenlets.spawn(
            "greenworks.coordination.redis[%s]" % self._name, self._renew_loop, self._stop_renewer
        )

    def _renew_loop(self, stop):
        pid = os.getpid()
        while True:
            interval = self._renew_interval or self._lease_ttl / 3.0
            if self._clock.wait(stop, interval) or os.getpid() != pid:
                return
            if not self.renew():
                return

    # -- claims --------------------------------------------------------------

    def claim(self, key, ttl):
        """``SET <name>:claim:<key> <token> NX PX <ttl>``; see `ILeaderLock.claim`.

        An error is logged and read as False (the claim is not taken).

        :raises InvalidArgument: *ttl* is not a number > 0, or *key* is not a str.
        """
        ttl = check_ttl("ttl", ttl)
        if not isinstance(key, str):
            raise invalid_argument("key", key, "a str")
        try:
            claimed = self._client.set("%s:claim:%s" % (self._name, key), self._holder, nx=True, px=_ms(ttl))
        except self._errors():
            self._logger.warning("redis lock %s: claim %r failed", self._name, key, exc_info=True)
            return False
        return bool(claimed)

    def __repr__(self):
        return "<RedisLock %s holder=%s held=%s>" % (self._name, self._holder, self._held)
