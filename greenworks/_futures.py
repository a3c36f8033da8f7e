"""
green_future(): a ``concurrent.futures.Future`` whose condition costs a C lock, not a Python one.

Every ``concurrent.futures.Future`` builds a ``threading.Condition``; in a
monkey-patched process that is the pure-Python ``threading._PyRLock`` over
gevent's locks, and taking it (five times or more in a future's life:
``set_running_or_notify_cancel``, ``set_result``, ``cf.wait``'s ordered
acquire and its clean-up, ``result()``) cost more than the rest of a trivial
task put together. :func:`green_future` makes a plain
``concurrent.futures.Future`` (the class itself, every method the standard
library's) whose ``_condition`` is a
:class:`GreenCondition`: the C ``_thread.RLock`` itself, plus the
``wait``/``notify`` half of the Condition protocol.

Why a C lock is right here: it excludes other OS threads, which is all the
Future's lock has to do. Greenlets of one thread never meet inside it,
because no critical section of ``concurrent.futures`` switches (the one
that blocks, ``Condition.wait``, lets go of the lock first). A C RLock is
owned by the OS thread, so even a greenlet that did switch inside it could
not deadlock its own hub: another greenlet of the thread would just re-enter.

Waiting is the standard library's recipe: each waiter blocks on a lock of its
own that ``notify`` releases. That lock is gevent's (what monkey-patched
``threading.Condition`` uses), so a greenlet waiting on the hub's thread
yields to the hub. A waiter on another OS thread (gevent's threadpool, a
native thread) blocks in that thread's own hub, and ``notify`` from a
different thread hands the release to that hub's loop
(``run_callback_threadsafe``) instead of releasing the lock itself: gevent
before 26.8 does not wake a waiter of another thread on a plain release (it
sleeps until its timeout, for ever without one), and the hand-off is right
on every gevent.
"""

import concurrent.futures as cf
import time
from collections.abc import Callable
from typing import Any, TypeVar

from gevent import get_hub
from gevent.monkey import get_original
from gevent.thread import allocate_lock

__all__ = ["GreenCondition", "green_future"]

_T = TypeVar("_T")

# The C RLock, even if something patched _thread: ownership by OS thread is the point.
_CRLock: type = get_original("_thread", "RLock")
# The OS thread's id: monkey-patched, _thread.get_ident names the greenlet.
_thread_id: Callable[[], int] = get_original("_thread", "get_ident")
_PENDING = cf._base.PENDING
_new = cf.Future.__new__


class GreenCondition(_CRLock):  # type: ignore[misc]
    """A ``threading.Condition`` over its own C RLock, for futures.

    ``acquire``/``release``/``with`` are the C RLock's own (re-entrant,
    owned by the OS thread). ``wait`` and ``wait_for`` block (a greenlet
    yields to its hub); ``notify`` and ``notify_all`` never switch, and wake
    waiters of any OS thread. The waiters' list is made by the first
    ``wait``: a future completed before anyone waited never builds one.
    """

    # Read from the class until the first wait() stores one on the instance.
    # Each waiter: (its lock, held until notified; its OS thread's id; that thread's hub loop).
    _waiters: list[tuple[Any, int, Any]] | None = None

    def wait(self, timeout: float | None = None) -> bool:
        """Let go of the lock, block until notified or *timeout* seconds passed, take it back.

        Blocks (a greenlet yields to its hub).

        :return bool: False if it timed out.
        :raises RuntimeError: the lock is not held by this thread.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = allocate_lock()
        waiter.acquire()
        entry = (waiter, _thread_id(), get_hub().loop)
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(entry)
        count = self._release_save()[0]
        notified: bool = False
        try:
            if timeout is None:
                notified = waiter.acquire()
            elif timeout > 0:
                notified = waiter.acquire(True, timeout)
            else:
                notified = waiter.acquire(False)
            return notified
        finally:
            # acquire() rather than _acquire_restore(): if another greenlet of this
            # thread holds the lock, re-entering beats blocking the whole thread.
            for _ in range(count):
                self.acquire()
            if not notified:
                try:
                    waiters.remove(entry)
                except ValueError:
                    pass  # notified just as the wait ended

    def wait_for(self, predicate: Callable[[], _T], timeout: float | None = None) -> _T:
        """Wait until *predicate()* is true or *timeout* seconds passed; return its last value.

        Blocks, as :meth:`wait`.
        """
        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = time.monotonic() + waittime
                else:
                    waittime = endtime - time.monotonic()
                    if waittime <= 0:
                        break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to *n* waiters, oldest first. Never switches.

        :raises RuntimeError: the lock is not held by this thread.
        """
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        waiters = self._waiters
        if not waiters:
            return
        woken = waiters[:n]
        del waiters[:n]
        here = _thread_id()
        for waiter, thread, loop in woken:
            if thread == here:
                waiter.release()
            else:
                # Released by its own hub: the only cross-thread wake-up older gevent honours.
                loop.run_callback_threadsafe(waiter.release)

    def notify_all(self) -> None:
        """Wake every waiter. Never switches.

        :raises RuntimeError: the lock is not held by this thread.
        """
        # The common case (nobody ever waited) is one class-attribute read.
        if self._waiters:
            self.notify(len(self._waiters))
        elif not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")

    def __repr__(self) -> str:
        # The C repr names the class and says locked/unlocked, owner and count.
        return "%s, %d waiting>" % (super().__repr__()[:-1], len(self._waiters or ()))


def green_future() -> "cf.Future[Any]":
    """A new pending ``concurrent.futures.Future`` whose ``_condition`` is a :class:`GreenCondition`.

    The very class ``concurrent.futures.Future`` (``type(f) is cf.Future``),
    every method the standard library's: only the lock under them is cheaper.
    Built without ``Future.__init__``, which would make the costly
    ``threading.Condition`` first; the attributes are the ones it sets
    (CPython 3.8 to 3.13; a test pins them).
    """
    future: cf.Future[Any] = _new(cf.Future)
    future._condition = GreenCondition()
    future._state = _PENDING
    future._result = None
    future._exception = None
    future._waiters = []
    future._done_callbacks = []  # type: ignore[attr-defined]
    return future
