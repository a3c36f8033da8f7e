"""green_future() and GreenCondition: the cheap Future GreenExecutor hands out, and its condition.

The future's whole behaviour is the standard library's (tests/test_cf_conformance.py
runs it); these pin what the condition under it must do: the Condition protocol
``concurrent.futures`` uses, green waits on the hub's thread, and waits and
completions that cross OS threads (gevent's threadpool threads are real ones).
"""

import concurrent.futures as cf

import gevent
import pytest
from conftest import GEVENT_BEFORE_26_8
from gevent.event import Event
from gevent.monkey import get_original

from greenworks import _futures
from greenworks._futures import GreenCondition, green_future
from greenworks.executor import GreenExecutor
from greenworks.testing import settle

#: The OS thread's id (monkey-patched, _thread.get_ident names the greenlet).
os_thread = get_original("_thread", "get_ident")


def in_thread(fn, *args):
    """Run ``fn(*args)`` on a real OS thread of the hub's threadpool; an AsyncResult-like handle."""
    return gevent.get_hub().threadpool.spawn(fn, *args)


def until(predicate):
    """Let the hub run until *predicate()* holds: another OS thread gets there in its own time.

    Not a sleep standing in for a signal: it polls a state the other thread
    sets, and the per-test guard bounds it.
    """
    while not predicate():
        gevent.sleep(0.001)


def waiting(cond):
    return len(cond._waiters or ())


class TestGreenFuture:
    def test_is_the_stdlib_future_class(self):
        """Not a subclass: type(f) is cf.Future, and its repr reads the same."""
        future = green_future()
        assert type(future) is cf.Future
        assert repr(future).startswith("<Future at ")
        assert isinstance(future._condition, GreenCondition)

    def test_has_the_attributes_future_init_sets(self):
        """Built without Future.__init__: the same attributes, with the same values."""
        plain, green = cf.Future(), green_future()
        assert list(vars(green)) == list(vars(plain))
        for name, value in vars(plain).items():
            if name != "_condition":
                assert getattr(green, name) == value, name
        assert green._waiters is not green_future()._waiters

    def test_completed_before_anyone_waits_builds_no_waiter_list(self):
        """The common case: set_result notifies nobody, result() and cf.wait never block."""
        future = green_future()
        assert future.set_running_or_notify_cancel()
        future.set_result(7)
        assert future._condition._waiters is None
        assert future.result(timeout=0) == 7
        assert cf.wait([future], timeout=0).done == {future}
        assert future._condition._waiters is None

    def test_result_wakes_on_set_result_from_another_greenlet(self):
        future = green_future()
        waiter = gevent.spawn(future.result)
        settle()
        assert waiting(future._condition) == 1
        future.set_result("done")
        assert waiter.get(timeout=5) == "done"
        assert waiting(future._condition) == 0

    def test_exception_times_out(self):
        """result(timeout)/exception(timeout) on a pending future raise TimeoutError and leave no waiter."""
        future = green_future()
        with pytest.raises(cf.TimeoutError):
            future.exception(timeout=0.01)
        with pytest.raises(cf.TimeoutError):
            future.result(timeout=0)
        assert waiting(future._condition) == 0

    def test_cancel_wakes_a_waiter(self):
        future = green_future()
        waiter = gevent.spawn(future.exception)
        settle()
        assert future.cancel()
        with pytest.raises(cf.CancelledError):
            waiter.get(timeout=5)


class TestGreenCondition:
    def test_is_a_reentrant_lock(self):
        cond = GreenCondition()
        with cond:
            assert cond.acquire(False)  # re-entered by the same thread
            cond.release()
        with pytest.raises(RuntimeError):
            cond.release()

    def test_wait_and_notify_need_the_lock(self):
        cond = GreenCondition()
        with pytest.raises(RuntimeError, match="un-acquired"):
            cond.wait(0)
        with pytest.raises(RuntimeError, match="un-acquired"):
            cond.notify()
        with pytest.raises(RuntimeError, match="un-acquired"):
            cond.notify_all()

    def test_wait_times_out_with_false_and_leaves_no_waiter(self):
        cond = GreenCondition()
        with cond:
            assert cond.wait(0) is False
            assert cond.wait(0.01) is False
            assert cond.wait(-1) is False
        assert waiting(cond) == 0
        assert cond.acquire(False)  # the lock is taken back after each wait
        cond.release()

    def test_notify_wakes_the_oldest_waiters_first(self):
        cond = GreenCondition()
        woken = []

        def wait(name):
            with cond:
                assert cond.wait(5) is True
                woken.append(name)

        waiters = [gevent.spawn(wait, name) for name in "abc"]
        settle()
        assert waiting(cond) == 3
        with cond:
            cond.notify(2)
        settle()
        assert woken == ["a", "b"]
        with cond:
            cond.notify_all()
        gevent.joinall(waiters, timeout=5, raise_error=True)
        assert woken == ["a", "b", "c"]
        with cond:
            cond.notify_all()  # nobody left: a no-op

    def test_a_waiting_greenlet_lets_other_greenlets_run(self):
        """wait() yields to the hub: a notifier greenlet gets in while the lock's owner waits."""
        cond = GreenCondition()
        ready = []

        def notifier():
            with cond:
                ready.append(True)
                cond.notify()

        with cond:
            gevent.spawn(notifier)
            assert cond.wait_for(lambda: ready, timeout=5) == [True]

    def test_wait_for_returns_the_last_predicate_value_on_timeout(self):
        cond = GreenCondition()
        with cond:
            assert cond.wait_for(lambda: 0, timeout=0.01) == 0

    def test_wait_releases_every_level_and_restores_them(self):
        """Held twice, wait() lets another OS thread take the lock, then holds it twice again."""
        cond = GreenCondition()

        def other_thread():
            with cond:
                cond.notify()
            return True

        with cond, cond:
            handle = in_thread(other_thread)
            assert cond.wait(10) is True
            assert handle.get(timeout=10) is True
            cond.release()  # the second level is back
            cond.acquire()
        with pytest.raises(RuntimeError):
            cond.release()  # and no more than the two


class TestAcrossThreads:
    def test_a_real_thread_waits_for_a_green_task(self):
        """result() from a threadpool thread blocks that thread until a worker greenlet finishes."""
        gate = Event()
        with GreenExecutor(2) as executor:
            future = executor.submit(lambda: gate.wait(10) and "green")
            handle = in_thread(future.result, 10)
            until(lambda: waiting(future._condition) == 1)
            gate.set()
            assert handle.get(timeout=10) == "green"
            assert future.result() == "green"

    @pytest.mark.skipif(
        GEVENT_BEFORE_26_8,
        reason="gevent %s hangs a patched threading.Event.set() waited on by another OS thread "
        "(fixed in gevent 26.8)" % gevent.__version__,
    )
    def test_cf_wait_and_as_completed_from_a_real_thread(self):
        gates = [Event(), Event()]
        with GreenExecutor(2) as executor:
            futures = [executor.submit(lambda g=g: g.wait(10)) for g in gates]

            def wait_in_thread():
                done = cf.wait(futures, timeout=10).done
                return len(done), [f.result() for f in cf.as_completed(futures, timeout=10)]

            handle = in_thread(wait_in_thread)
            until(lambda: all(f._waiters for f in futures))
            for gate in gates:
                gate.set()
            assert handle.get(timeout=10) == (2, [True, True])

    def test_a_notify_from_another_thread_is_released_by_the_waiters_own_hub(self, monkeypatch):
        """The release runs on the waiting thread: gevent before 26.8 wakes no waiter otherwise.

        On the newer gevent CI runs, a release from the notifying thread would
        also wake the waiter, so this pins where it happens, both ways.
        """
        released_on = []
        allocate = _futures.allocate_lock

        class RecordingLock:  # gevent's LockType refuses subclasses
            def __init__(self):
                self._lock = allocate()

            def acquire(self, *args):
                return self._lock.acquire(*args)

            def release(self):
                released_on.append(os_thread())
                self._lock.release()

        monkeypatch.setattr(_futures, "allocate_lock", RecordingLock)
        hub_thread = os_thread()
        cond = GreenCondition()

        def notify_from_thread():
            with cond:
                cond.notify()
            return os_thread()

        with cond:
            handle = in_thread(notify_from_thread)
            assert cond.wait(10) is True
        notifier = handle.get(timeout=10)
        assert notifier != hub_thread
        assert released_on == [hub_thread]

        def wait_in_thread():
            with cond:
                return cond.wait(10), os_thread()

        handle = in_thread(wait_in_thread)
        until(lambda: waiting(cond) == 1)
        with cond:
            cond.notify()
        woke, waiter_thread = handle.get(timeout=10)
        assert woke is True and waiter_thread != hub_thread
        assert released_on == [hub_thread, waiter_thread]

    def test_a_real_thread_completes_a_future_a_greenlet_waits_for(self):
        """The other direction: a greenlet on the hub waits, a threadpool thread sets the result."""
        future = green_future()
        waiter = gevent.spawn(future.result, 10)
        settle()
        assert waiting(future._condition) == 1
        in_thread(future.set_result, "from a thread").get(timeout=10)
        assert waiter.get(timeout=10) == "from a thread"

    def test_an_interrupted_wait_leaves_no_waiter_and_the_lock_free(self):
        """gevent.Timeout (or a kill) in result(): the waiter is gone and another thread can lock."""
        future = green_future()
        with pytest.raises(gevent.Timeout), gevent.Timeout(0.01):
            future.result()
        assert waiting(future._condition) == 0
        cond = future._condition

        def lock_and_unlock():
            if not cond.acquire(False):
                return False
            cond.release()
            return True

        assert in_thread(lock_and_unlock).get(timeout=10) is True

    def test_repr_says_how_many_wait(self):
        cond = GreenCondition()

        def wait():
            with cond:
                return cond.wait(5)

        waiter = gevent.spawn(wait)
        settle()
        assert repr(cond).startswith("<unlocked ") and repr(cond).endswith(", 1 waiting>")
        with cond:
            cond.notify()
        assert waiter.get(timeout=5) is True
