"""Context: cancellation trees and deadlines on the real clock and on a FakeClock."""

import gc
import weakref

import gevent
import pytest
from gevent.event import Event
from zope.interface.verify import verifyClass, verifyObject

from greenworks import _greenlets
from greenworks.context import Context, background, with_cancel, with_deadline, with_timeout
from greenworks.exceptions import Canceled, ContextError, DeadlineExceeded, InvalidArgument
from greenworks.interfaces import IContext


class TestInterfaces:
    def test_context_class_provides_icontext(self):
        """Context implements every method of IContext."""
        assert verifyClass(IContext, Context)

    def test_context_objects_provide_icontext(self):
        """Derived contexts and background() carry every IContext attribute."""
        assert verifyObject(IContext, with_cancel())
        assert verifyObject(IContext, background())


class TestCancel:
    def test_cancel_sets_done_and_err(self):
        """A cancelled context is done and reports a Canceled error."""
        ctx = with_cancel()
        assert ctx.err is None and not ctx.done.is_set()
        ctx.cancel()
        assert ctx.done.is_set()
        assert isinstance(ctx.err, Canceled)

    def test_cancel_is_idempotent_and_err_is_stable(self):
        """Cancelling twice keeps the same err instance."""
        ctx = with_cancel()
        ctx.cancel()
        first = ctx.err
        ctx.cancel()
        assert ctx.err is first

    def test_parent_cancel_reaches_every_descendant_at_once(self):
        """Cancelling a parent marks children and grandchildren done before cancel() returns."""
        parent = with_cancel()
        child_a, child_b = with_cancel(parent), with_cancel(parent)
        grandchild = with_timeout(child_a, 60)
        parent.cancel()
        for ctx in (child_a, child_b, grandchild):
            assert ctx.done.is_set()
            assert ctx.err is parent.err

    def test_child_cancel_leaves_parent_and_siblings_alone(self):
        """Cancelling a child touches neither its parent nor its siblings."""
        parent = with_cancel()
        child, sibling = with_cancel(parent), with_cancel(parent)
        child.cancel()
        assert parent.err is None and sibling.err is None

    def test_cancelled_child_is_forgotten_by_parent(self):
        """A cancelled child is released by its parent, so long-lived parents do not leak."""
        parent = with_cancel()
        child = with_cancel(parent)
        ref = weakref.ref(child)
        child.cancel()
        del child
        gc.collect()
        assert ref() is None

    def test_child_of_done_parent_is_born_done(self):
        """Deriving from a cancelled context gives a context that is already done with its error."""
        parent = with_cancel()
        parent.cancel()
        child = with_cancel(parent)
        assert child.done.is_set() and child.err is parent.err

    def test_deep_chain_cancels_without_recursion_error(self):
        """Cancelling the root of a 5,000-deep chain works (no recursion)."""
        root = ctx = with_cancel()
        for _ in range(5000):
            ctx = with_cancel(ctx)
        root.cancel()
        assert isinstance(ctx.err, Canceled)

    def test_background_is_never_done_and_refuses_cancel(self):
        """background() has no deadline, is never done, and cannot be cancelled."""
        bg = background()
        assert bg.err is None and bg.deadline is None
        with pytest.raises(TypeError):
            bg.cancel()
        assert bg.err is None

    def test_context_manager_cancels_on_exit(self):
        """Leaving a `with` block cancels the context."""
        with with_cancel() as ctx:
            assert ctx.err is None
        assert isinstance(ctx.err, Canceled)

    def test_waiting_greenlet_wakes_on_cancel(self):
        """A greenlet blocked in ctx.wait() wakes when another greenlet cancels."""
        ctx = with_cancel()
        waiter = gevent.spawn(ctx.wait)
        gevent.sleep(0)
        ctx.cancel()
        assert waiter.get(timeout=1) is True

    def test_done_supports_rawlink(self):
        """ctx.done accepts rawlink callbacks, which run once it is cancelled."""
        ctx = with_cancel()
        seen = Event()
        ctx.done.rawlink(lambda _: seen.set())
        ctx.cancel()
        assert seen.wait(1)


class TestDoneIsCreatedOnDemand:
    """A context's Event exists only once something reads ``done`` or waits (issue 21)."""

    def test_a_context_nobody_waits_on_has_no_event(self):
        """Deriving, reading err and cancelling (a parent with children too) create no Event."""
        parent = with_cancel()
        child = with_cancel(parent)
        assert child.err is None and not child.is_done()
        parent.cancel()
        assert child.is_done() and child.err is parent.err
        assert parent._done is None and child._done is None

    def test_done_read_after_the_cancel_is_already_set(self):
        """The Event created after the context ended is set, and it is the same Event every time."""
        parent = with_cancel()
        child = with_timeout(parent, 60)
        parent.cancel()
        done = child.done
        assert done.is_set() and child.done is done
        assert child.wait(0) and child.wait() and not child.sleep(1.0)

    def test_an_event_read_before_the_cancel_is_set_by_it_and_wakes_a_waiter(self):
        """A waiter parked on done before the cancel wakes when a parent is cancelled."""
        parent = with_cancel()
        child = with_cancel(parent)
        waiter = gevent.spawn(child.wait)
        gevent.sleep(0)
        assert child._done is not None and not child.done.is_set()
        parent.cancel()
        assert child.done.is_set() and waiter.get(timeout=5) is True


class TestRaiseIfDone:
    def test_raise_if_done_is_silent_while_live(self):
        """raise_if_done() returns None on a live context."""
        assert with_cancel().raise_if_done() is None

    def test_raise_if_done_raises_a_fresh_copy_of_err(self):
        """raise_if_done() raises the err's type with a new instance each time."""
        ctx = with_cancel()
        ctx.cancel()
        with pytest.raises(Canceled) as first:
            ctx.raise_if_done()
        with pytest.raises(Canceled) as second:
            ctx.raise_if_done()
        assert first.value is not second.value and first.value is not ctx.err

    def test_deadline_exceeded_is_not_canceled(self):
        """DeadlineExceeded and Canceled are distinct ContextErrors; DeadlineExceeded is a TimeoutError."""
        assert not issubclass(DeadlineExceeded, Canceled)
        assert issubclass(DeadlineExceeded, ContextError) and issubclass(Canceled, ContextError)
        assert issubclass(DeadlineExceeded, TimeoutError)


class TestDeadlinesOnFakeClock:
    def test_timeout_fires_exactly_at_deadline(self, clock):
        """with_timeout(…, 5) is live at 4.999 s and DeadlineExceeded at 5 s of fake time."""
        ctx = with_timeout(None, 5, clock=clock)
        assert ctx.deadline == clock.monotonic() + 5
        clock.advance(4.999)
        assert ctx.err is None
        clock.advance(0.001)
        assert isinstance(ctx.err, DeadlineExceeded)

    def test_child_inherits_clock_and_earlier_parent_deadline(self, clock):
        """A child asking for a later deadline gets its parent's (a child never outlives it)."""
        parent = with_timeout(None, 2, clock=clock)
        child = with_timeout(parent, 10)
        assert child.clock is clock
        assert child.deadline == parent.deadline
        clock.advance(2)
        assert isinstance(child.err, DeadlineExceeded)

    def test_child_with_earlier_deadline_does_not_touch_parent(self, clock):
        """A child's own earlier deadline expires the child only."""
        parent = with_timeout(None, 10, clock=clock)
        child = with_timeout(parent, 1)
        clock.advance(1)
        assert isinstance(child.err, DeadlineExceeded)
        assert parent.err is None
        assert parent.remaining() == 9

    def test_cancel_before_deadline_wins(self, clock):
        """Cancelling before the deadline leaves Canceled, and the timer is dropped."""
        ctx = with_timeout(None, 5, clock=clock)
        assert clock.sleepers == 1
        ctx.cancel()
        assert clock.sleepers == 0
        clock.advance(10)
        assert isinstance(ctx.err, Canceled)

    def test_non_positive_timeout_is_born_expired(self, clock):
        """with_timeout(…, 0) is already DeadlineExceeded."""
        assert isinstance(with_timeout(None, 0, clock=clock).err, DeadlineExceeded)

    def test_with_deadline_uses_monotonic_time(self, clock):
        """with_deadline expires when the clock's monotonic time reaches it."""
        ctx = with_deadline(with_cancel(clock=clock), clock.monotonic() + 3)
        clock.advance(3)
        assert isinstance(ctx.err, DeadlineExceeded)

    def test_sleep_returns_true_when_time_passes(self, clock):
        """ctx.sleep(s) returns True after s seconds of fake time on a live context."""
        ctx = with_cancel(clock=clock)
        sleeper = gevent.spawn(ctx.sleep, 30)
        assert clock.wait_for_sleepers(1)
        clock.advance(30)
        assert sleeper.get(timeout=1) is True

    def test_sleep_returns_false_early_on_cancel(self, clock):
        """ctx.sleep(s) returns False as soon as the context is cancelled."""
        ctx = with_cancel(clock=clock)
        sleeper = gevent.spawn(ctx.sleep, 30)
        assert clock.wait_for_sleepers(1)
        clock.advance(1)
        assert not sleeper.ready()
        ctx.cancel()
        assert sleeper.get(timeout=1) is False

    def test_sleep_returns_false_when_deadline_cuts_it_short(self, clock):
        """ctx.sleep past the deadline returns False at the deadline."""
        ctx = with_timeout(None, 2, clock=clock)
        sleeper = gevent.spawn(ctx.sleep, 30)
        assert clock.wait_for_sleepers(2)
        clock.advance(2)
        assert sleeper.get(timeout=1) is False

    def test_sleep_on_done_context_returns_false_at_once(self, clock):
        """ctx.sleep on a done context does not block."""
        ctx = with_cancel(clock=clock)
        ctx.cancel()
        assert ctx.sleep(100) is False
        assert clock.sleepers == 0

    def test_bad_timeout_is_rejected_naming_the_argument(self):
        """with_timeout rejects a non-number, naming `seconds` and the value."""
        with pytest.raises(InvalidArgument, match=r"seconds .*'soon'"):
            with_timeout(None, "soon")

    def test_bad_parent_is_rejected_naming_the_argument(self):
        """Deriving from something that is not a context names `parent`."""
        with pytest.raises(InvalidArgument, match="parent"):
            with_cancel(object())


class TestDeadlinesOnRealClock:
    def test_real_timeout_expires(self):
        """A 20 ms real timeout expires with DeadlineExceeded (waited for by event, not sleep)."""
        ctx = with_timeout(None, 0.02)
        assert ctx.wait(timeout=2) is True
        assert isinstance(ctx.err, DeadlineExceeded)

    def test_real_sleep_returns_false_on_cancel(self):
        """A real ctx.sleep(60) returns False when cancelled from another greenlet."""
        ctx = with_cancel()
        sleeper = gevent.spawn(ctx.sleep, 60)
        gevent.sleep(0)
        ctx.cancel()
        assert sleeper.get(timeout=2) is False

    def test_contexts_hold_no_greenlet(self):
        """A tree of live contexts with deadlines spawns no greenlet of its own."""
        parent = with_timeout(None, 60)
        children = [with_timeout(parent, 30) for _ in range(100)]
        assert _greenlets.alive() == []
        assert all(c.err is None for c in children)
        parent.cancel()
