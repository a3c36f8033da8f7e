"""
A JobRunner's side of leader election: `Leadership`.

Once per wake-up the runner asks :meth:`Leadership.lead` whether it leads
(renewing the lease it holds, or trying to take it), and claims each due run
with :meth:`Leadership.claim` before starting it, so a job runs at most once
per due time across processes. What it says, and when:

- a change of leader is logged at INFO and announced (`LeadershipAcquired`,
  `LeadershipLost` with ``reason`` "lost", "error", "fenced" or "stopped");
- a lock whose backend cannot be reached (``acquire``/``renew`` raised, or
  returned False with the lock's ``last_error`` set) for `ERROR_TICKS`
  wake-ups in a row is logged once, at ERROR, and shown as ``error`` until a
  wake-up reaches it again, which is logged once too;
- a fenced claim (`~greenworks.interfaces.IFencedLock`: a newer leader
  acquired the lock after this process did, so this one was paused past its
  lease) ends leadership at once and refuses every further claim of that
  wake-up.
"""

import datetime
from typing import Any

from greenworks._component import Lifecycle
from greenworks.events import LeadershipAcquired, LeadershipLost

__all__ = ["ERROR_TICKS", "Leadership"]

#: Consecutive wake-ups without reaching the lock's backend before one ERROR.
ERROR_TICKS = 3

_UTC = datetime.timezone.utc


class Leadership:
    """Leader election and per-run claims for one JobRunner.

    :param Lifecycle life: the runner's lifecycle (logger, events).
    :param lock: an `ILeaderLock`, or None (then this process always leads).
    :param float ttl: the lease passed to ``acquire``.
    :param float claim_ttl: how long a claim lives (it must outlive its due time).
    :param dict stats: the runner's counters (``claim_skips_total``, ``fenced_claims_total``).
    """

    __slots__ = (
        "_life",
        "_log",
        "lock",
        "ttl",
        "claim_ttl",
        "_stats",
        "is_leader",
        "error",
        "_failures",
        "_fenced",
    )

    def __init__(
        self, life: Lifecycle, lock: Any, ttl: float, claim_ttl: float, stats: dict[str, int]
    ) -> None:
        self._life = life
        self._log = life.logger
        self.lock = lock
        self.ttl = ttl
        self.claim_ttl = claim_ttl
        self._stats = stats
        #: Whether this process led its last wake-up (always True without a lock).
        self.is_leader = lock is None
        #: The backend error once it failed ERROR_TICKS times in a row, as text; else None.
        self.error: str | None = None
        self._failures = 0
        self._fenced = False

    def lead(self) -> bool:
        """Be the leader this wake-up, or not. Blocks for one round trip to the backend at most."""
        lock = self.lock
        self._fenced = False
        if lock is None:
            return True
        error: BaseException | None = None
        try:
            ok = False
            if self.is_leader and lock.is_held:
                ok = bool(lock.renew())
            if not ok:
                ok = bool(lock.acquire(self.ttl))
            if not ok:
                error = getattr(lock, "last_error", None)
        except Exception as exc:
            ok = False
            error = exc
        self._note(error)
        if ok != self.is_leader:
            self._log.info("job runner %r: %s leadership", self._life.name, "took" if ok else "lost")
            if ok:
                self._life.emit(LeadershipAcquired)
            else:
                self._life.emit(LeadershipLost, "error" if error is not None else "lost")
        self.is_leader = ok
        return ok

    def _note(self, error: BaseException | None) -> None:
        name = self._life.name
        if error is None:
            if self.error is not None:
                self._log.warning("job runner %r: the leader lock is reachable again", name)
            self._failures = 0
            self.error = None
            return
        self._failures += 1
        if self._failures == ERROR_TICKS:
            self.error = "%s: %s" % (type(error).__name__, error)
            self._log.error(
                "job runner %r: the leader lock %r failed on %d ticks in a row; no jobs run until it"
                " recovers: %s",
                name,
                self.lock,
                ERROR_TICKS,
                self.error,
                exc_info=error,
            )
        else:
            self._log.debug("job runner %r: leader lock failed: %r", name, error)

    def claim(self, job_id: str, due: datetime.datetime) -> bool:
        """Claim the run of *job_id* for *due*; True only for the one process that may run it.

        Without a lock every claim succeeds. A refusal because another
        process has the run is counted (``claim_skips_total``); a fenced one
        ends leadership (``fenced_claims_total``).
        """
        if self.lock is None:
            return True
        if self._fenced:
            self._stats["fenced_claims_total"] += 1
            return False
        key = "%s@%s" % (job_id, due.astimezone(_UTC).isoformat())
        try:
            outcome = self.lock.claim(key, self.claim_ttl)
        except Exception:
            self._log.exception("job runner %r: claim %r failed; job not run", self._life.name, key)
            outcome = False
        if str(outcome) == "fenced":
            self._stats["fenced_claims_total"] += 1
            self._fenced = True
            self._log.warning(
                "job runner %r: a newer leader holds %r (this process was paused past its lease);"
                " no jobs run until it leads again",
                self._life.name,
                self.lock,
            )
            if self.is_leader:
                self.is_leader = False
                self._life.emit(LeadershipLost, "fenced")
            return False
        if not outcome:
            self._stats["claim_skips_total"] += 1
            return False
        return True

    def token(self) -> int | None:
        """The fencing token of the lease held now (a fenced lock), for jobs to pass on; else None."""
        return getattr(self.lock, "token", None) if self.lock is not None else None

    def release(self) -> None:
        """Give the lease up if held (stopping). Never raises."""
        if self.lock is None or not self.is_leader:
            return
        try:
            self.lock.release()
        except Exception:
            self._log.exception("job runner %r: releasing the leader lock failed", self._life.name)
        self.is_leader = False
        self._life.emit(LeadershipLost, "stopped")
