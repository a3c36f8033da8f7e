"""
`LocalLock`: the in-process leader lock, the default when nothing is shared.
"""

import logging

from zope.interface import implementer

from greenworks.clock import get_clock
from greenworks.coordination._common import check_ttl, new_holder_id
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import ILeaderLock

__all__ = ["LocalLock"]

logger = logging.getLogger(__name__)


class _LocalState:
    """The lease and the claims that a `LocalLock` and its peers share."""

    __slots__ = ("owner", "expires", "claims", "clock")

    def __init__(self, clock):
        self.clock = clock
        self.owner = None
        self.expires = None
        self.claims = {}

    def claim(self, key, ttl):
        now = self.clock.monotonic()
        expires = self.claims.get(key)
        if expires is not None and expires > now:
            return False
        if len(self.claims) > 64:
            # Claims are one-off keys ("job@tick"): forget the expired ones
            # now and then so a long-lived process does not grow forever.
            for stale in [k for k, t in self.claims.items() if t <= now]:
                del self.claims[stale]
        self.claims[key] = now + ttl
        return True


@implementer(ILeaderLock)
class LocalLock:
    """Default implementation of `ILeaderLock` inside one process.

    A lone ``LocalLock()`` is always acquirable by whoever asks: a single
    process is always its own leader, which is what a `JobRunner` without a
    shared lock needs. Its claims still work, so two runners handed the same
    instance never run one ``job@tick`` twice.

    :meth:`peer` returns another instance (another holder id) contending for
    the *same* lease and claims, which is how a test plays "two processes" in
    one: the lease then behaves like the shared locks (exclusive, expiring
    after *ttl* without :meth:`renew`, measured on *clock*).

    Nothing here blocks or switches greenlets.

    :param float ttl: default lease for :meth:`acquire` called without one
        (``None``: the lease never expires by itself).
    :param clock: an `IClock` (default: the real clock); expiry is measured
        on its ``monotonic()``.
    """

    def __init__(self, ttl=None, *, clock=None, logger=None):
        self._ttl = check_ttl("ttl", ttl, allow_none=True)
        self._state = _LocalState(get_clock(clock))
        self._lease_ttl = self._ttl
        self._holder = new_holder_id()
        self._logger = logger or logging.getLogger(__name__)

    def peer(self):
        """Return a new `LocalLock` sharing this one's lease and claims (another holder)."""
        other = LocalLock.__new__(LocalLock)
        other._ttl = self._ttl
        other._state = self._state
        other._lease_ttl = self._ttl
        other._holder = new_holder_id()
        other._logger = self._logger
        return other

    @property
    def holder(self):
        return self._holder

    @property
    def is_held(self):
        state = self._state
        if state.owner is not self:
            return False
        return state.expires is None or state.expires > state.clock.monotonic()

    def _live_owner(self):
        state = self._state
        if state.owner is None:
            return None
        if state.expires is not None and state.expires <= state.clock.monotonic():
            return None
        return state.owner

    def acquire(self, ttl=None):
        """Take the lease (or extend it if already held); see `ILeaderLock.acquire`.

        :param float ttl: seconds; ``None`` uses the constructor's *ttl*.
        :raises InvalidArgument: *ttl* is not a number > 0 (nor None).
        """
        ttl = check_ttl("ttl", ttl, allow_none=True)
        if ttl is None:
            ttl = self._ttl
        owner = self._live_owner()
        if owner is not None and owner is not self:
            return False
        state = self._state
        if owner is None:
            self._logger.debug("local lock acquired by %s", self._holder)
        state.owner = self
        self._lease_ttl = ttl
        state.expires = None if ttl is None else state.clock.monotonic() + ttl
        return True

    def renew(self):
        if not self.is_held:
            return False
        state = self._state
        if self._lease_ttl is not None:
            state.expires = state.clock.monotonic() + self._lease_ttl
        return True

    def release(self):
        """Give the lease up if this instance holds it; idempotent."""
        state = self._state
        if state.owner is self:
            state.owner = None
            state.expires = None
            self._logger.debug("local lock released by %s", self._holder)

    def claim(self, key, ttl):
        """Claim *key* for *ttl* seconds; True once per key while the claim lives.

        :raises InvalidArgument: *ttl* is not a number > 0, or *key* is not a str.
        """
        ttl = check_ttl("ttl", ttl)
        if not isinstance(key, str):
            raise invalid_argument("key", key, "a str")
        return self._state.claim(key, ttl)

    def __repr__(self):
        return "<LocalLock holder=%s held=%s>" % (self._holder, self.is_held)
