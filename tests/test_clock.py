"""Clock and FakeClock: the only sources of time, and how tests drive it."""

import datetime
import time

import gevent
import pytest
from gevent.event import Event
from zope.interface.verify import verifyClass, verifyObject

from greenworks import _greenlets
from greenworks.clock import Clock, default_clock, get_clock
from greenworks.exceptions import InvalidArgument
from greenworks.interfaces import IClock, ITimerHandle
from greenworks.testing import FakeClock


class TestInterfaces:
    def test_clock_classes_provide_iclock(self):
        """Clock and FakeClock implement IClock."""
        assert verifyClass(IClock, Clock)
        assert verifyClass(IClock, FakeClock)

    def test_clock_objects_and_handles_provide_their_interfaces(self):
        """Clock and FakeClock objects, and their timer handles, pass verifyObject."""
        assert verifyObject(IClock, Clock())
        fake = FakeClock()
        assert verifyObject(IClock, fake)
        for clock in (Clock(), fake):
            handle = clock.call_later(60, lambda: None)
            assert verifyObject(ITimerHandle, handle)
            handle.cancel()


class TestGetClock:
    def test_none_means_the_real_clock(self):
        """get_clock(None) is the process-wide real clock."""
        assert get_clock() is default_clock
        assert isinstance(default_clock, Clock)

    def test_a_clock_passes_through(self):
        """get_clock(clock) returns that very clock."""
        fake = FakeClock()
        assert get_clock(fake) is fake

    def test_non_clock_is_rejected_naming_the_argument(self):
        """get_clock rejects an object that is not an IClock, naming `clock`."""
        with pytest.raises(InvalidArgument, match=r"clock must be .* got 42"):
            get_clock(42)


class TestRealClock:
    def test_now_is_aware_and_current(self):
        """Clock.now() is timezone-aware and agrees with time.time()."""
        now = Clock().now()
        assert now.tzinfo is not None
        assert abs(now.timestamp() - time.time()) < 5

    def test_now_honours_an_explicit_zone(self):
        """Clock.now(tz) returns the time in that zone."""
        assert Clock().now(datetime.timezone.utc).utcoffset() == datetime.timedelta(0)

    def test_call_later_runs_callback_without_a_greenlet(self):
        """call_later fires its callback from the loop; no greenworks greenlet exists meanwhile."""
        fired = Event()
        handle = Clock().call_later(0.01, fired.set)
        assert handle.active and _greenlets.alive() == []
        assert fired.wait(2)
        assert not handle.active

    def test_cancelled_call_later_never_fires(self):
        """A cancelled timer does not run its callback."""
        fired = Event()
        handle = Clock().call_later(0.01, fired.set)
        handle.cancel()
        handle.cancel()
        assert not Clock().wait(fired, 0.05)

    def test_sleep_until_reaches_the_deadline(self):
        """sleep_until never returns before the monotonic deadline."""
        clock = Clock()
        deadline = clock.monotonic() + 0.02
        clock.sleep_until(deadline)
        assert clock.monotonic() >= deadline

    def test_wait_with_zero_timeout_polls(self):
        """wait(event, 0) reports the event's state without blocking."""
        event = Event()
        assert Clock().wait(event, 0) is False
        event.set()
        assert Clock().wait(event, 0) is True


class TestFakeClockTime:
    def test_time_stands_still_until_advanced(self):
        """A FakeClock's time does not move with real time."""
        clock = FakeClock()
        before = (clock.time(), clock.monotonic())
        gevent.sleep(0.01)
        assert (clock.time(), clock.monotonic()) == before

    def test_default_start_and_zone(self):
        """By default a FakeClock starts at 2026-01-01 00:00 UTC and now() is in UTC."""
        assert FakeClock().now() == datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)

    def test_start_accepts_naive_datetime_as_utc_and_timestamps(self):
        """start= takes a naive datetime as UTC, or a POSIX timestamp."""
        naive = FakeClock(start=datetime.datetime(2030, 5, 1, 12, 0))
        assert naive.time() == datetime.datetime(2030, 5, 1, 12, tzinfo=datetime.timezone.utc).timestamp()
        assert FakeClock(start=1000.0).time() == 1000.0

    def test_bad_start_is_rejected(self):
        """start= that is neither datetime nor number names the argument."""
        with pytest.raises(InvalidArgument, match="start"):
            FakeClock(start="noon")

    def test_advance_moves_wall_and_monotonic_together(self):
        """advance(s) moves time() and monotonic() by s, and now() follows."""
        clock = FakeClock()
        t0, m0 = clock.time(), clock.monotonic()
        clock.advance(90.5)
        assert clock.time() == t0 + 90.5 and clock.monotonic() == m0 + 90.5
        assert clock.now() == datetime.datetime(2026, 1, 1, 0, 1, 30, 500000, tzinfo=datetime.timezone.utc)

    def test_negative_advance_is_rejected(self):
        """advance(-1) raises, naming `seconds`."""
        with pytest.raises(InvalidArgument, match="seconds"):
            FakeClock().advance(-1)


class TestFakeClockSleepers:
    def test_sleepers_wake_in_deadline_order_seeing_their_own_deadline(self, clock):
        """advance wakes sleepers in deadline order; each sees time equal to its own deadline."""
        woke = []

        def sleeper(name, seconds):
            clock.sleep(seconds)
            woke.append((name, clock.monotonic()))

        start = clock.monotonic()
        for name, seconds in [("c", 3), ("a", 1), ("b", 2)]:
            gevent.spawn(sleeper, name, seconds)
        assert clock.wait_for_sleepers(3)
        clock.advance(10)
        assert woke == [("a", start + 1), ("b", start + 2), ("c", start + 3)]

    def test_ties_wake_in_the_order_they_slept(self, clock):
        """Sleepers with equal deadlines wake in the order they went to sleep."""
        woke = []
        for index in range(20):
            gevent.spawn(lambda i=index: (clock.sleep(5), woke.append(i)))
        assert clock.wait_for_sleepers(20)
        clock.advance(5)
        assert woke == list(range(20))

    def test_advance_stops_short_of_later_deadlines(self, clock):
        """Only sleepers whose deadline passed wake; the rest stay asleep."""
        early = gevent.spawn(clock.sleep, 1)
        late = gevent.spawn(clock.sleep, 100)
        assert clock.wait_for_sleepers(2)
        clock.advance(50)
        assert early.dead and not late.dead
        clock.advance(50)
        assert late.dead

    def test_many_sleepers(self, clock):
        """10,000 sleepers at scattered deadlines all wake, in order, in one advance."""
        woke = []
        for index in range(10000):
            gevent.spawn(lambda i=index: (clock.sleep((i * 7919) % 1000 / 10.0), woke.append(i)))
        # A zero sleep only yields, so it never registers as a sleeper.
        assert clock.wait_for_sleepers(sum(1 for i in range(10000) if (i * 7919) % 1000))
        clock.advance(100)
        assert len(woke) == 10000
        deadlines = [(i * 7919) % 1000 for i in woke]
        assert deadlines == sorted(deadlines)

    def test_sleeper_that_sleeps_again_within_the_advance_wakes_again(self, clock):
        """A woken greenlet that sleeps again inside the advanced span is woken again, in order."""
        ticks = []

        def ticker():
            for _ in range(5):
                clock.sleep(1)
                ticks.append(clock.monotonic())

        gevent.spawn(ticker)
        assert clock.wait_for_sleepers(1)
        start = clock.monotonic()
        clock.advance(3.5)
        assert ticks == [start + 1, start + 2, start + 3]
        clock.advance(10)
        assert ticks == [start + s for s in (1, 2, 3, 4, 5)]

    def test_advance_lets_woken_greenlets_run_before_returning(self, clock):
        """Work a woken greenlet does after its sleep, across further switches, is done by then."""
        steps = []

        def worker():
            clock.sleep(1)
            steps.append("woke")
            gevent.sleep(0)
            child_done = Event()
            gevent.spawn(lambda: (steps.append("child"), child_done.set()))
            child_done.wait()
            steps.append("finished")

        gevent.spawn(worker)
        assert clock.wait_for_sleepers(1)
        clock.advance(1)
        assert steps == ["woke", "child", "finished"]

    def test_advance_from_inside_a_greenlet(self, clock):
        """advance() can be called from a spawned greenlet and wakes the main one."""
        driver = gevent.spawn(lambda: (clock.wait_for_sleepers(1), clock.advance(5)))
        clock.sleep(5)
        driver.get(timeout=1)
        assert clock.monotonic() == 1005.0

    def test_wait_returns_on_event_or_fake_timeout(self, clock):
        """clock.wait(event, t) returns True when set, False when t passes on the fake clock."""
        event = Event()
        timed_out = gevent.spawn(clock.wait, event, 10)
        assert clock.wait_for_sleepers(1)
        clock.advance(10)
        assert timed_out.get(timeout=1) is False
        set_first = gevent.spawn(clock.wait, event, 10)
        assert clock.wait_for_sleepers(1)
        event.set()
        assert set_first.get(timeout=1) is True
        assert clock.sleepers == 0

    def test_call_later_and_cancel(self, clock):
        """call_later callbacks run at their deadline; cancelled ones never run."""
        fired = []
        clock.call_later(2, fired.append, "kept")
        dropped = clock.call_later(1, fired.append, "dropped")
        dropped.cancel()
        assert clock.sleepers == 1 and clock.next_deadline() == 1002.0
        clock.advance(5)
        assert fired == ["kept"]

    def test_advance_to_next_jumps_to_earliest_deadline(self, clock):
        """advance_to_next moves exactly to the earliest deadline and returns the step."""
        clock.call_later(7, lambda: None)
        assert clock.advance_to_next() == 7
        assert clock.advance_to_next() == 0.0

    def test_wait_for_sleepers_times_out_honestly(self, clock):
        """wait_for_sleepers returns False when nobody ever sleeps."""
        assert clock.wait_for_sleepers(1, timeout=0.05) is False
