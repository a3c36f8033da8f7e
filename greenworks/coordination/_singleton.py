"""
`singleton`: run an `IWorker` on exactly one process of a cluster.
"""

import logging
from typing import Any

from zope.interface import implementer

from greenworks import _greenlets
from greenworks._runutil_core import WorkerFunc
from greenworks.clock import ClockLike, get_clock
from greenworks.context import Context, with_cancel
from greenworks.coordination._common import check_ttl
from greenworks.exceptions import invalid_argument
from greenworks.interfaces import ILeaderLock, IWorker

__all__ = ["singleton"]

logger = logging.getLogger(__name__)


@implementer(IWorker)
class _Singleton:
    """An `IWorker` that runs its inner worker only while holding a leader lock."""

    def __init__(
        self, lock: Any, worker: Any, ttl: float | None, poll: float, name: str, clock: ClockLike, logger: Any
    ) -> None:
        self.lock = lock
        self.worker = worker
        self._ttl = ttl
        self._poll = poll
        self._name = name
        self._clock = clock
        self._logger = logger

    def run(self, ctx: Context) -> None:
        """Contend for the lock until *ctx* is done; run the inner worker while leading.

        Each time the lease is won, ``worker.run(lease)`` is called with a
        child of *ctx* that is cancelled as soon as a renewal fails (lease
        lost). When the inner worker returns because of that, the lock is
        released and this loop contends again; when it returns (or raises)
        for any other reason, the lock is released and that outcome is
        passed on, as `IWorker` says.
        """
        lock = self.lock
        while not ctx.done.is_set():
            if not lock.acquire(self._ttl):
                self._clock.wait(ctx.done, self._poll)
                continue
            self._logger.info("singleton %s: leading as %s", self._name, lock.holder)
            lease = with_cancel(ctx, clock=self._clock)
            lost: list[bool] = []
            watcher = _greenlets.spawn(
                "greenworks.coordination.singleton[%s]" % self._name, self._watch, lease, lost
            )
            try:
                self.worker.run(lease)
            finally:
                lease.cancel()
                watcher.join()
                lock.release()
            if not lost:
                return
            self._logger.warning("singleton %s: lease lost; stopped the worker, contending again", self._name)

    def _watch(self, lease: Context, lost: list[bool]) -> None:
        # Renew at the poll interval; the first failure cancels the worker.
        while not self._clock.wait(lease.done, self._poll):
            if not self.lock.renew():
                lost.append(True)
                lease.cancel()
                return

    def __repr__(self) -> str:
        return "<singleton %s lock=%r>" % (self._name, self.lock)


def singleton(
    lock: Any,
    worker: Any,
    *,
    ttl: float | None = None,
    poll: float | None = None,
    name: str | None = None,
    clock: ClockLike | None = None,
    logger: Any = None,
) -> _Singleton:
    """Wrap *worker* so that across every process sharing *lock* exactly one runs it.

    The returned `IWorker` (hand it to a `Runner`, `run_all_workers` or a
    gunicorn `Runtime`) loops: try ``lock.acquire(ttl)``; when that fails,
    wait *poll* seconds and try again; when it succeeds, run ``worker.run``
    with a context that is cancelled if a renewal (every *poll* seconds, in a
    greenlet named ``greenworks.coordination.singleton[<name>]``) fails.
    The lock is always released when the inner worker returns. The inner
    worker's ``run`` may therefore be called again each time leadership comes
    back to this process; it must be written for that.

    :param ILeaderLock lock: shared by the contending processes.
    :param worker: the work to run on one process only: an `IWorker` or a callable ``f(ctx)``.
    :param float ttl: the lease passed to ``acquire`` (``None``: the lock's default).
    :param float poll: seconds between attempts and between renewals
        (default: ``ttl / 3``, or 1 s without *ttl*).
    :param str name: for logs and the greenlet's name (default: the worker's class name).
    :raises InvalidArgument: *lock* is not an `ILeaderLock`, *worker* has no
        ``run``, or *ttl* / *poll* is not a number > 0.
    """
    if not ILeaderLock.providedBy(lock):
        raise invalid_argument("lock", lock, "an ILeaderLock (LocalLock, FileLock, RedisLock)")
    if not callable(getattr(worker, "run", None)):
        if not callable(worker):
            raise invalid_argument(
                "worker", worker, "an IWorker (an object with run(ctx)) or a callable f(ctx)"
            )
        # A plain f(ctx), as retry() and repeat() accept it.
        worker = WorkerFunc(worker)
    ttl = check_ttl("ttl", ttl, allow_none=True)
    poll = check_ttl("poll", poll, allow_none=True)
    if poll is None:
        poll = ttl / 3.0 if ttl is not None else 1.0
    if name is None:
        name = getattr(getattr(worker, "fn", None), "__name__", None) or type(worker).__name__
    return _Singleton(lock, worker, ttl, poll, name, get_clock(clock), logger or logging.getLogger(__name__))
