"""
`FileLock`: a leader lock shared by the processes of one host (``fcntl.flock``).
"""

import errno
import fcntl
import hashlib
import logging
import os
from typing import Any

import gevent
from zope.interface import implementer

from greenworks.clock import ClockLike, get_clock
from greenworks.coordination._common import BackendHealth, ClaimResult, check_ttl, fence_floor, new_holder_id
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import IFencedLock, ILeaderLock

__all__ = ["FileLock"]

logger = logging.getLogger(__name__)

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
#: How many non-blocking tries (with a yield between) before the claims mutex
#: falls back to a blocking flock; its critical section is a few syscalls.
_MUTEX_SPINS = 200
#: Expired claim files are swept at most this often (seconds).
_SWEEP_INTERVAL = 30.0


def _would_block(exc: OSError) -> bool:
    return exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)


@implementer(IFencedLock, ILeaderLock)
class FileLock:
    """Default implementation of `IFencedLock` for one host: ``flock`` on *path*.

    The lease is an exclusive ``flock`` taken with ``LOCK_NB`` on a file
    descriptor this instance opened: :meth:`acquire` tries once and never
    waits, so the hub is never blocked. The kernel drops the lock the moment
    the holding process dies (SIGKILL, OOM, WORKER TIMEOUT), so the next
    :meth:`acquire` by any process on the host succeeds at once. The lease has
    no expiry of its own: *ttl* only matters to :meth:`claim`.

    The holder id (``host:pid:nonce``) is written into the lock file for
    diagnostics (:meth:`read_holder`); the file itself is never deleted,
    because unlinking a lock file lets two processes lock two different inodes.
    :meth:`renew` notices if the file was replaced anyway, and gives up.

    **fork**: a ``flock`` belongs to the open file description, which a forked
    child shares with its parent. Every method checks the pid; in a forked
    child the inherited descriptor is closed (without unlocking, which would
    free the parent's lease) and a fresh one is opened, so a child never
    inherits leadership - it must :meth:`acquire` like any other process.

    Claims (:meth:`claim`) live as small files in *claims_dir* (default:
    ``<path>.claims``), created under a short ``flock`` mutex, holding their
    wall-clock expiry; expired ones are swept now and then.

    Fencing: the counter lives in ``<path>.fence`` (the latest token, as
    text, replaced atomically). :meth:`acquire` increments it under the
    claims mutex right after taking the flock, and :meth:`claim` reads it
    under the same mutex, so a claim and a newer acquisition are ordered:
    a holder whose lock file was replaced (the one way two processes can
    both hold a flock on "the" lock) is refused with ``FENCED`` once the
    newcomer acquired. A flock does not expire, so a paused (SIGSTOP) holder
    keeps the lease: nobody takes over, and it resumes leading.

    :param str path: the lock file; created at construction if missing.
    :param str claims_dir: where claim files go; created at construction if missing.
    :param clock: an `IClock`; claim expiry uses its ``time()``.
    :raises InvalidArgument: *path*'s directory does not exist or is not
        writable, or *claims_dir* cannot be created there (the error names
        the argument and the OS error), so a misconfigured lock fails at
        construction rather than by never leading.
    """

    def __init__(
        self,
        path: Any,
        *,
        claims_dir: Any = None,
        clock: ClockLike | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise invalid_argument("path", path, "a file path (str or os.PathLike)")
        if claims_dir is not None and not isinstance(claims_dir, (str, os.PathLike)):
            raise invalid_argument("claims_dir", claims_dir, "a directory path or None")
        self._path: str = os.fspath(path)
        self._claims_dir: str = os.fspath(claims_dir) if claims_dir is not None else self._path + ".claims"
        self._fence_path = self._path + ".fence"
        self._clock = get_clock(clock)
        self._logger = logger or logging.getLogger(__name__)
        self._fd: int | None = None
        self._pid = os.getpid()
        self._held = False
        self._holder = new_holder_id()
        self._token: int | None = None
        self._last_sweep: float | None = None
        self._health = BackendHealth("file lock %s" % self._path, self._logger)
        _check_writable("path", self._path)
        _check_writable("claims_dir", self._claims_dir, directory=True)

    # -- reading -------------------------------------------------------------

    @property
    def path(self) -> str:
        """The lock file's path."""
        return self._path

    @property
    def holder(self) -> str:
        self._check_fork()
        return self._holder

    @property
    def is_held(self) -> bool:
        self._check_fork()
        return self._held

    @property
    def token(self) -> int | None:
        """The fencing token of the held lease (an int), or None while not held."""
        self._check_fork()
        return self._token if self._held else None

    @property
    def last_error(self) -> BaseException | None:
        return self._health.last_error

    def read_holder(self) -> str:
        """Return the id last written into the lock file ("" if none).

        Diagnostic only: after the holder died the file still names it until
        the next holder writes its own id. Does not block.
        """
        try:
            with open(self._path, encoding="utf-8") as f:
                return f.read().strip()
        except FileNotFoundError:
            return ""

    # -- the lease -----------------------------------------------------------

    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid == self._pid:
            return
        # Forked child: the inherited fd shares the parent's open file
        # description and therefore its flock. Close our copy (the parent's
        # lease stays intact) and start over as a new contender.
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = None
        self._held = False
        self._token = None
        self._pid = pid
        self._holder = new_holder_id()

    def _drop(self) -> None:
        fd, self._fd = self._fd, None
        self._held = False
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _same_file(self) -> bool:
        if self._fd is None:
            return False
        try:
            return os.stat(self._path).st_ino == os.fstat(self._fd).st_ino
        except OSError:
            return False

    def acquire(self, ttl: float | None = None) -> bool:
        """Try once, without waiting, to take the flock; see `ILeaderLock.acquire`.

        *ttl* is accepted for the interface's sake and validated; the flock
        has no expiry. On success the fence counter is incremented (under the
        claims mutex, which may yield briefly) and becomes :attr:`token`.
        Errors from the file system are logged once per outage and read as
        False. Never blocks the hub.

        :raises InvalidArgument: *ttl* is not a number > 0 (nor None).
        """
        check_ttl("ttl", ttl, allow_none=True)
        self._check_fork()
        if self._held:
            return self.renew()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, _OPEN_FLAGS, 0o644)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if not _would_block(exc):
                    raise
                if self._same_file():
                    self._health.ok()
                    return False
                # Our descriptor is on a replaced file: contend for the new one.
                self._drop()
                self._fd = os.open(self._path, _OPEN_FLAGS, 0o644)
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as again:
                    if _would_block(again):
                        self._health.ok()
                        return False
                    raise
            if not self._same_file():
                # The file was replaced between open and flock: the lock we
                # got guards nothing. Start over on the next attempt.
                self._drop()
                return False
            token = self._next_token()
            data = (self._holder + "\n").encode("utf-8")
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError as exc:
            self._health.failed(exc, "acquire")
            self._drop()
            return False
        self._health.ok()
        self._held = True
        self._token = token
        self._logger.info("file lock %s acquired by %s (token %d)", self._path, self._holder, token)
        return True

    def _next_token(self) -> int:
        """Increment the fence counter under the claims mutex; return the new token."""
        mutex = self._open_mutex()
        try:
            self._lock_mutex(mutex)
            latest = _read_int(self._fence_path)
            token = fence_floor() if latest is None else latest + 1
            tmp = "%s.%s.tmp" % (self._fence_path, self._holder.replace(":", "_"))
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("%d\n" % token)
            os.replace(tmp, self._fence_path)
            return token
        finally:
            os.close(mutex)

    def _open_mutex(self) -> int:
        os.makedirs(self._claims_dir, exist_ok=True)
        return os.open(os.path.join(self._claims_dir, ".mutex"), _OPEN_FLAGS, 0o644)

    def renew(self) -> bool:
        """Return whether the flock is still ours (the file was not replaced). Never blocks."""
        self._check_fork()
        if not self._held:
            return False
        if not self._same_file():
            self._logger.warning("file lock %s: the lock file was replaced; lease lost", self._path)
            self._drop()
            return False
        self._health.ok()
        return True

    def release(self) -> None:
        """Unlock and close the descriptor if held; idempotent; never blocks."""
        self._check_fork()
        if not self._held or self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError as exc:
            # Closing the descriptor below unlocks anyway.
            self._health.failed(exc, "unlock")
        self._drop()
        self._logger.info("file lock %s released by %s", self._path, self._holder)

    # -- claims --------------------------------------------------------------

    def _lock_mutex(self, fd: int) -> None:
        for _ in range(_MUTEX_SPINS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if not _would_block(exc):
                    raise
            gevent.sleep(0)
        # Still contended after many yields: the other side's critical section
        # is a handful of syscalls, so a blocking flock is brief.
        fcntl.flock(fd, fcntl.LOCK_EX)

    def claim(self, key: str, ttl: float) -> ClaimResult:
        """Claim *key* for *ttl* seconds across every process of this host, fenced.

        Exactly one caller gets ``CLAIMED`` per key while the claim lives (a
        claim whose wall-clock expiry passed may be taken again). Under the
        same mutex the fence counter is compared with this instance's latest
        token: older (or the counter file gone) is ``FENCED`` and drops the
        lease. File system errors are logged once per outage and read as
        ``FAILED`` (so a job is skipped, never run twice). May yield to other
        greenlets while another process holds the claims mutex; never blocks
        the hub for long.

        :return ClaimResult: see `IFencedLock.claim`.
        :raises InvalidArgument: *ttl* is not a number > 0, or *key* is not a str.
        """
        ttl = check_ttl("ttl", ttl)
        if not isinstance(key, str):
            raise invalid_argument("key", key, "a str")
        self._check_fork()
        name = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
        target = os.path.join(self._claims_dir, name)
        try:
            mutex = self._open_mutex()
        except OSError as exc:
            self._health.failed(exc, "claim %r" % key)
            return ClaimResult.FAILED
        try:
            self._lock_mutex(mutex)
            if self._token is not None:
                latest = _read_int(self._fence_path)
                if latest is None or latest > self._token:
                    result = self._fenced(latest)
                    self._health.ok()
                    return result
            now = self._clock.time()
            expires = _read_expiry(target)
            if expires is not None and expires > now:
                self._health.ok()
                return ClaimResult.TAKEN
            tmp = "%s.%s.tmp" % (target, self._holder.replace(":", "_"))
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("%r\n%s\n%s\n" % (now + ttl, self._holder, key))
            os.replace(tmp, target)
            self._maybe_sweep(now)
            self._health.ok()
            return ClaimResult.CLAIMED
        except OSError as exc:
            self._health.failed(exc, "claim %r" % key)
            return ClaimResult.FAILED
        finally:
            os.close(mutex)  # also drops the mutex flock

    def _fenced(self, latest: int | None) -> ClaimResult:
        if self._held:
            self._logger.warning(
                "file lock %s: %s is stale (token %d, the lock's latest is %s); lease dropped",
                self._path,
                self._holder,
                self._token,
                latest,
            )
            self._drop()
        return ClaimResult.FENCED

    def _maybe_sweep(self, now: float) -> None:
        if self._last_sweep is not None and now - self._last_sweep < _SWEEP_INTERVAL:
            return
        self._last_sweep = now
        with os.scandir(self._claims_dir) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.name.endswith(".tmp"):
                    continue
                expires = _read_expiry(entry.path)
                if expires is not None and expires <= now:
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        pass

    def __repr__(self) -> str:
        return "<FileLock %s holder=%s held=%s>" % (self._path, self._holder, self._held)


def _check_writable(argument: str, path: str, directory: bool = False) -> None:
    """Create *path* (a file, or a directory and its mutex file) now; raise InvalidArgument if we cannot."""
    try:
        if directory:
            os.makedirs(path, exist_ok=True)
            fd = os.open(os.path.join(path, ".mutex"), _OPEN_FLAGS, 0o644)
        else:
            fd = os.open(path, _OPEN_FLAGS, 0o644)
        os.close(fd)
    except OSError as exc:
        raise invalid_argument(
            argument, path, "a path in an existing, writable directory (%s)" % (exc.strerror or exc)
        ) from exc


def _read_int(path: str) -> int | None:
    """Return the int stored in *path*, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _read_expiry(path: str) -> float | None:
    """Return the expiry stored in claim file *path*, or None if there is none."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except FileNotFoundError:
        return None
    try:
        return float(first)
    except ValueError:
        # Unreadable content: treat as expired so a corrupt file cannot
        # block a key forever.
        return float("-inf")
