"""Helpers shared by the lock implementations: ids, ttl checks, claim results, outage reporting."""

import enum
import logging
import os
import socket
import time
import uuid
from typing import Any, Literal, overload

from greenworks import _checks

__all__ = ["BackendHealth", "ClaimResult", "check_ttl", "fence_floor", "new_holder_id"]


def new_holder_id() -> str:
    """Return a fresh ``host:pid:nonce`` id naming one lock instance in one process."""
    return "%s:%d:%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:12])


@overload
def check_ttl(name: str, value: Any, allow_none: Literal[False] = False) -> float: ...


@overload
def check_ttl(name: str, value: Any, allow_none: bool) -> float | None: ...


def check_ttl(name: str, value: Any, allow_none: bool = False) -> float | None:
    """Return *value* as a float if it is a number ``> 0``, else raise `InvalidArgument`.

    :param str name: the argument's name, for the error message.
    :param bool allow_none: accept ``None`` (returned as is).
    """
    if value is None and allow_none:
        return None
    # The one duration rule (no bool, NaN or inf); None handled above because
    # here it means "the default", not "no limit".
    result: float = _checks.seconds(name, value, positive=True)
    return result


def fence_floor() -> int:
    """The first fencing token of a counter that is missing: wall time in microseconds.

    A counter that is created again (its file deleted, Redis restarted without
    its data) starts from here rather than from 1, so the tokens handed out
    after the loss are still greater than every token handed out before it
    (as long as the clock did not step back, and fewer than a million
    acquisitions a second happened before the loss).
    """
    return time.time_ns() // 1000


class ClaimResult(enum.Enum):
    """What `IFencedLock.claim` answered; true only for `CLAIMED`.

    It is truthy exactly when the claim was won, so ``if lock.claim(key, ttl):``
    reads as before, and a caller that cares tells the refusals apart:

    - ``CLAIMED``: this caller won the key; run the thing it guards.
    - ``TAKEN``: somebody claimed the key already (and the claim lives).
    - ``FENCED``: refused because the lock was acquired by a newer holder
      after this instance's acquisition: this instance is a *stale* leader
      (it was paused, or its lease expired while it was busy) and must stop
      acting as one. The instance has also dropped its lease.
    - ``FAILED``: the backend could not be reached; see ``last_error``.
    """

    CLAIMED = "claimed"
    TAKEN = "taken"
    FENCED = "fenced"
    FAILED = "failed"

    def __bool__(self) -> bool:
        return self is ClaimResult.CLAIMED

    def __str__(self) -> str:
        return self.value


class BackendHealth:
    """Say a backend outage once when it starts and once when it ends; keep the latest error.

    Every backend call of a lock reports here: :meth:`failed` with the
    exception, :meth:`ok` after a success. The first failure after a success
    is logged at WARNING with its traceback; further failures of the same
    outage only at DEBUG; the first success afterwards at WARNING again
    ("reachable again"), so an application that shows warnings sees both ends
    of every outage and nothing in between. Never blocks.
    """

    __slots__ = ("what", "logger", "last_error", "failing_since", "failures")

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what = what
        self.logger = logger
        #: The exception of the latest failed call, None after a success.
        self.last_error: BaseException | None = None
        #: ``time.time()`` of the first failure of the current outage, or None.
        self.failing_since: float | None = None
        #: Failed calls in the current outage.
        self.failures = 0

    def failed(self, exc: BaseException, action: str) -> None:
        """Record that *action* (``"acquire"``, ``"claim 'k'"``) failed with *exc*."""
        self.last_error = exc
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = time.time()
            self.logger.warning(
                "%s: %s failed (%s: %s); read as not held / not claimed. Further failures stay"
                " quiet until it recovers",
                self.what,
                action,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        else:
            self.logger.debug("%s: %s failed again: %r", self.what, action, exc)

    def ok(self) -> None:
        """Record a successful call; ends the outage (logged once) if there was one."""
        self.last_error = None
        if self.failing_since is not None:
            self.logger.warning(
                "%s: backend reachable again after %d failed call(s) over %.1f s",
                self.what,
                self.failures,
                time.time() - self.failing_since,
            )
            self.failing_since = None
            self.failures = 0
