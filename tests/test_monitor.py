"""Tests for greenworks.monitor: hub-blocking detection, attribution, and a clean stop."""

import json
import socket

import gevent
import greenlet
import pytest
import zope.event
from gevent import monkey
from gevent.event import AsyncResult, Event
from zope.interface.verify import verifyClass, verifyObject

from greenworks import _component, monitor
from greenworks.events import HubBlocked
from greenworks.exceptions import InvalidArgument
from greenworks.interfaces import IComponent, IHubWatch
from greenworks.jobs import JobRunner, job
from greenworks.monitor import HubWatch, watch_hub

real_sleep = monkey.get_original("time", "sleep")
thread_count = monkey.get_original("_thread", "_count")

# Each test blocks the hub for real: bounded, a few seconds at most.
pytestmark = pytest.mark.timeout(20)


class Component:
    """The smallest component: a Lifecycle and one greenlet running *func*."""

    def __init__(self, name):
        self._life = _component.Lifecycle(self, "worker", name, None, None, __name__)

    def spawn(self, label, func):
        return self._life.spawn(label, func)


@pytest.fixture
def blocked():
    """Subscribe to HubBlocked: yields a list of the events; an AsyncResult holds the first."""
    events = []
    first = AsyncResult()

    def subscriber(event):
        if isinstance(event, HubBlocked):
            events.append(event)
            first.set(event)

    zope.event.subscribers.append(subscriber)
    try:
        yield events, first
    finally:
        zope.event.subscribers.remove(subscriber)


@pytest.fixture
def watch():
    """A running watch at 0.1 s, stopped afterwards."""
    w = watch_hub(0.1)
    try:
        yield w
    finally:
        w.stop()


class TestInterfaces:
    def test_hub_watch_provides_ihubwatch(self):
        """HubWatch provides IHubWatch (and so IComponent), attributes included."""
        assert verifyClass(IHubWatch, HubWatch)
        w = HubWatch(0.2)
        assert verifyObject(IHubWatch, w) and verifyObject(IComponent, w)


class TestArguments:
    @pytest.mark.parametrize("bad", [0, -1, float("nan"), "0.1", True, None])
    def test_bad_max_blocking_time_is_refused_naming_it(self, bad):
        """A max_blocking_time that is not a number > 0 is refused, naming the argument."""
        with pytest.raises(InvalidArgument, match="max_blocking_time"):
            watch_hub(bad)

    def test_watch_hub_is_idempotent_per_process(self, watch):
        """A second watch_hub() returns the running watch; another threshold is refused, not ignored."""
        assert watch_hub(0.1) is watch and monitor.current() is watch
        with pytest.raises(InvalidArgument, match=r"max_blocking_time.*already running"):
            watch_hub(0.5)


class TestAttribution:
    def test_component_greenlet_blocking_is_named_with_its_component_and_stack(self, watch, blocked):
        """A component's greenlet that blocks 300 ms is reported within a second: name, component, stack."""
        _events, first = blocked

        def crunch():
            real_sleep(0.3)

        Component("thumbs").spawn("greenworks.thumbs[resize]", crunch)
        event = first.get(timeout=1.0)
        assert event.greenlet_name == "greenworks.thumbs[resize]"
        assert event.component_name == "thumbs" and event.name == "thumbs"
        assert event.task_or_job == "resize"
        assert 0.2 <= event.seconds <= 0.6
        assert "crunch" in event.stack and "real_sleep(0.3)" in event.stack
        assert event.at.tzinfo is not None
        assert watch.counts() == {"thumbs": 1}

    def test_job_blocking_is_reported_by_job_id(self, watch, blocked, clock):
        """A JobRunner job that burns 300 ms unpatched is reported by job id, as greenworks.jobs[report]."""
        _events, first = blocked
        ran = Event()

        def report():
            real_sleep(0.3)
            ran.set()

        runner = JobRunner(tick=60, name="reports", clock=clock)
        try:
            runner.set_jobs([job("report", report)])
            clock.advance(60)
            assert ran.wait(timeout=5)
            event = first.get(timeout=1.0)
        finally:
            runner.stop_and_wait()
        assert event.greenlet_name == "greenworks.jobs[report]"
        assert event.task_or_job == "report"
        # The JobRunner's Lifecycle names it; before it has one, the greenlet name does.
        assert event.component_name in ("reports", "jobs")
        assert "report" in event.stack

    def test_foreign_greenlet_is_reported_as_foreign(self, watch, blocked):
        """A greenlet greenworks did not spawn is reported with no component, by its own name."""
        _events, first = blocked
        g = gevent.spawn(real_sleep, 0.3)
        g.name = "someone-elses"
        event = first.get(timeout=1.0)
        g.join()
        assert event.greenlet_name == "someone-elses"
        assert event.component_name is None and event.component is None and event.task_or_job is None
        [top] = watch.top_blockers(5)
        assert top["foreign"] is True and top["greenlet_name"] == "someone-elses"
        by_component = watch.snapshot()["by_component"]
        assert by_component == {
            "(foreign)": {"blocks": 1, "seconds": pytest.approx(top["seconds"], abs=1e-5)}
        }

    def test_a_loop_that_only_waits_on_io_is_never_reported(self, watch, blocked):
        """Greenlets that wait on sockets and gevent.sleep for a second are not reported; a real block is."""
        events, first = blocked
        left, right = socket.socketpair()

        def echo():
            for _ in range(40):
                right.sendall(right.recv(16))

        def ping():
            for _ in range(40):
                left.sendall(b"ping")
                assert left.recv(16) == b"ping"
                gevent.sleep(0.025)  # the I/O wait under test: 40 x 25 ms, 4x the 0.1 s threshold

        try:
            gevent.joinall([gevent.spawn(echo), gevent.spawn(ping)], raise_error=True)
        finally:
            left.close()
            right.close()
        assert events == [] and watch.snapshot()["blocks"] == 0
        # The watch was looking all along: the first real block is reported.
        gevent.spawn(real_sleep, 0.25)
        assert first.get(timeout=1.0).seconds >= 0.1
        assert len(events) == 1


class TestReporting:
    def test_top_blockers_rank_by_seconds_and_count_per_component(self, watch, blocked):
        """top_blockers() puts the most blocked-seconds first; counts() and snapshot() count per component."""
        events, _first = blocked
        done = Event()
        a, b = Component("alpha"), Component("beta")

        def sequence():
            for component, label, seconds in ((a, "one", 0.15), (b, "two", 0.35), (a, "one", 0.15)):
                finished = component.spawn(
                    "greenworks.%s[%s]" % (component._life.name, label), lambda s=seconds: real_sleep(s)
                )
                finished.join()
                gevent.sleep(0.06)  # the loop runs between blocks, as in production
            done.set()

        gevent.spawn(sequence)
        assert done.wait(timeout=5)
        gevent.wait([Event()], timeout=0.2)
        top = watch.top_blockers(2)
        assert [t["component_name"] for t in top] == ["beta", "alpha"]
        assert top[1]["count"] == 2 and top[1]["max_seconds"] <= top[1]["seconds"]
        assert watch.counts() == {"alpha": 2, "beta": 1} and len(events) == 3
        data = watch.snapshot()
        assert json.loads(json.dumps(data)) == data
        assert data["component"] == "hubwatch" and data["state"] == "running" and data["blocks"] == 3
        assert data["top_blockers"][0]["last_stack"] and data["top_blockers"][0]["last_at"].endswith("+00:00")
        assert watch.top_blockers(0) == []


class TestLifecycle:
    def test_stop_leaves_no_thread_hook_or_greenlet_behind(self):
        """stop() ends the watcher thread, restores the switch hook, ends its greenlet; it is idempotent."""
        threads, hook = thread_count(), greenlet.gettrace()
        w = watch_hub(0.05)
        assert thread_count() == threads + 1 and greenlet.gettrace() is not hook
        assert w.stop() is True
        assert thread_count() == threads and greenlet.gettrace() is hook
        assert monitor.current() is None and w.state is _component.State.STOPPED
        assert w.stop() is True

    def test_context_manager_starts_and_stops(self):
        """``with watch_hub():`` watches inside the block and not after it."""
        with watch_hub(0.2) as w:
            assert w.running and monitor.current() is w
        assert not w.running and monitor.current() is None

    def test_a_block_that_ended_before_stop_is_still_reported(self, blocked):
        """A block the watcher saw end just before stop() is emitted by stop(), not lost."""
        events, _first = blocked
        w = watch_hub(0.05)
        real_sleep(0.2)  # blocks the hub from the test's own greenlet
        gevent.sleep(0)
        w.stop()
        assert len(events) == 1 and events[0].seconds >= 0.05
