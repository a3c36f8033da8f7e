"""
`LocalLock`: the in-process leader lock, the default when nothing is shared.
"""

import logging

from zope.interface import implementer

from greenworks.clock import ClockLike, get_clock
from greenworks.coordination._common import ClaimResult, check_ttl, new_holder_id
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IFencedLock, ILeaderLock

__all__ = ["LocalLock"]

logger = logging.getLogger(__name__)


class _LocalState:
    """The lease and the claims that a `LocalLock` and its peers share."""

    __slots__ = ("owner", "expires", "claims", "clock", "fence")

    def __init__(self, clock: ClockLike) -> None:
        self.clock = clock
        self.owner: LocalLock | None = None
        self.expires: float | None = None
        self.claims: dict[str, float] = {}
        #: The latest fencing token handed out (one counter for all peers).
        self.fence = 0

    def claim(self, key: str, ttl: float, token: int | None) -> ClaimResult:
        if token is not None and token < self.fence:
            return ClaimResult.FENCED
        now = self.clock.monotonic()
        expires = self.claims.get(key)
        if expires is not None and expires > now:
            return ClaimResult.TAKEN
        if len(self.claims) > 64:
            # Claims are one-off keys ("job@tick"): forget the expired ones
            # now and then so a long-lived process does not grow forever.
            for stale in [k for k, t in self.claims.items() if t <= now]:
                del self.claims[stale]
        self.claims[key] = now + ttl
        return ClaimResult.CLAIMED


@implementer(IFencedLock, ILeaderLock)
class LocalLock:
    """Default implementation of `IFencedLock` inside one process.

    A lone ``LocalLock()`` is always acquirable by whoever asks: a single
    process is always its own leader, which is what a `JobRunner` without a
    shared lock needs. Its claims still work, so two runners handed the same
    instance never run one ``job@tick`` twice.

    :meth:`peer` returns another instance (another holder id) contending for
    the *same* lease and claims, which is how a test plays "two processes" in
    one: the lease then behaves like the shared locks (exclusive, expiring
    after *ttl* without :meth:`renew`, measured on *clock*).

    Fencing: every acquisition (not a renewal) takes the next value of a
    counter the peers share (1, 2, 3, ...) as :attr:`token`, and
    :meth:`claim` refuses (`ClaimResult.FENCED`) a claim made by an instance
    whose token is older than the latest acquisition.

    Nothing here blocks or switches greenlets.

    :param float ttl: default lease for :meth:`acquire` called without one
        (``None``: the lease never expires by itself).
    :param clock: an `IClock` (default: the real clock); expiry is measured
        on its ``monotonic()``.
    """

    def __init__(
        self,
        ttl: float | None = None,
        *,
        clock: ClockLike | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._ttl = check_ttl("ttl", ttl, allow_none=True)
        self._state = _LocalState(get_clock(clock))
        self._lease_ttl = self._ttl
        self._holder = new_holder_id()
        self._logger = logger or logging.getLogger(__name__)
        self._token: int | None = None

    def peer(self) -> "LocalLock":
        """Return a new `LocalLock` sharing this one's lease and claims (another holder)."""
        other = LocalLock.__new__(LocalLock)
        other._ttl = self._ttl
        other._state = self._state
        other._lease_ttl = self._ttl
        other._holder = new_holder_id()
        other._logger = self._logger
        other._token = None
        return other

    @property
    def holder(self) -> str:
        return self._holder

    @property
    def is_held(self) -> bool:
        state = self._state
        if state.owner is not self:
            return False
        return state.expires is None or state.expires > state.clock.monotonic()

    @property
    def token(self) -> int | None:
        """The fencing token of the held lease (an int), or None while not held."""
        return self._token if self.is_held else None

    @property
    def last_error(self) -> BaseException | None:
        """Always None: there is no backend to fail."""
        return None

    def _live_owner(self) -> "LocalLock | None":
        state = self._state
        if state.owner is None:
            return None
        if state.expires is not None and state.expires <= state.clock.monotonic():
            return None
        return state.owner

    def acquire(self, ttl: float | None = None) -> bool:
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
            state.fence += 1
            self._token = state.fence
            self._logger.debug("local lock acquired by %s (token %d)", self._holder, self._token)
        state.owner = self
        self._lease_ttl = ttl
        state.expires = None if ttl is None else state.clock.monotonic() + ttl
        return True

    def renew(self) -> bool:
        if not self.is_held:
            return False
        state = self._state
        if self._lease_ttl is not None:
            state.expires = state.clock.monotonic() + self._lease_ttl
        return True

    def release(self) -> None:
        """Give the lease up if this instance holds it; idempotent."""
        state = self._state
        if state.owner is self:
            state.owner = None
            state.expires = None
            self._logger.debug("local lock released by %s", self._holder)

    def claim(self, key: str, ttl: float) -> ClaimResult:
        """Claim *key* for *ttl* seconds, fenced by this instance's latest token.

        :return ClaimResult: truthy (``CLAIMED``) once per key while the claim
            lives; ``TAKEN`` after that; ``FENCED`` (and the lease dropped) when
            a peer acquired after this instance's latest acquisition.
        :raises InvalidArgument: *ttl* is not a number > 0, or *key* is not a str.
        """
        ttl = check_ttl("ttl", ttl)
        if not isinstance(key, str):
            raise invalid_argument("key", key, "a str")
        result = self._state.claim(key, ttl, self._token)
        if result is ClaimResult.FENCED and self._state.owner is self:
            self.release()
        return result

    def __repr__(self) -> str:
        return "<LocalLock holder=%s held=%s>" % (self._holder, self.is_held)
