"""
Events (issue 16): each kind, emitted by the real component, with its fields;
a raising subscriber never breaks anything; nothing is built without a subscriber.
"""

import datetime
import logging

import gevent
import pytest
import zope.event
from gevent.event import Event
from zope.interface.verify import verifyObject

from greenworks import events
from greenworks.coordination import LocalLock
from greenworks.dispatcher import Dispatcher
from greenworks.exceptions import PanicError
from greenworks.interfaces import IGreenworksEvent
from greenworks.jobs import JobRunner, job
from greenworks.runner import Runner
from greenworks.schedules import Every
from greenworks.taskmanager import TaskManager
from greenworks.testing import settle

UTC = datetime.timezone.utc


@pytest.fixture
def seen():
    """The events published while the test runs, in order."""
    got = []
    zope.event.subscribers.append(got.append)
    yield got
    zope.event.subscribers.remove(got.append)


def of(seen, kind):
    return [event for event in seen if type(event) is kind]


class TestLifecycleEvents:
    def test_started_and_stopped(self, clock, seen):
        """ComponentStarted/ComponentStopped(clean) carry the component, its name and the clock's time."""
        pool = Dispatcher(10, 1, 1, name="io", clock=clock)
        pool.start()
        pool.stop()
        started, stopped = of(seen, events.ComponentStarted), of(seen, events.ComponentStopped)
        assert [(e.component, e.name, e.at) for e in started] == [(pool, "io", clock.now(UTC))]
        assert [(e.component, e.clean) for e in stopped] == [(pool, True)]
        assert all(verifyObject(IGreenworksEvent, e) for e in started + stopped)

    def test_unclean_stop(self, clock, seen):
        """ComponentStopped(clean=False) when stop had to kill."""
        runner = Runner(lambda task: lambda ctx: gevent.sleep(3600), stop_timeout=None, clock=clock)
        runner.apply_tasks(["t"])
        settle()
        stopper = gevent.spawn(runner.stop, 1.0)
        clock.wait_for_sleepers(1)
        clock.advance(1.0)
        stopper.get(timeout=5)
        assert [e.clean for e in of(seen, events.ComponentStopped)] == [False]


class TestDispatcherEvents:
    def test_pool_scaled_for_backlog_idle_and_resize(self, clock, seen):
        """PoolScaled(before, after, reason) with reason "backlog", "idle" and "resize"."""
        pool = Dispatcher(100, 0, 4, wait_between_scale_downs=5, clock=clock).start()
        gate = Event()
        for _ in range(4):
            pool.dispatch(gate.wait)
        settle()
        gate.set()
        settle()
        clock.advance(5)
        clock.advance(5)
        pool.resize(3, 3)
        settle()
        moves = [(e.before, e.after, e.reason) for e in of(seen, events.PoolScaled)]
        assert ("backlog" in {m[2] for m in moves}) and moves[0] == (0, 1, "backlog")
        assert any(m[2] == "idle" and m[1] < m[0] for m in moves)
        assert moves[-1][2] == "resize", moves
        pool.stop()

    def test_task_failed_timed_out_rejected(self, clock, seen):
        """TaskFailed(task, error), TaskTimedOut(task, seconds) and TaskRejected(task)."""
        pool = Dispatcher(1, 1, 1, task_timeout=1.0, overflow="reject", clock=clock).start()
        boom = ValueError("boom")

        def failing():
            raise boom

        def stuck():
            gevent.sleep(3600)

        pool.dispatch(failing)
        settle()
        pool.dispatch(stuck)
        settle()
        pool.dispatch(noop)  # buffered
        pool.dispatch(noop)  # full: rejected
        clock.advance(1.2)
        settle()
        assert [(e.task, e.error) for e in of(seen, events.TaskFailed)] == [(failing, boom)]
        assert [(e.task, e.seconds) for e in of(seen, events.TaskTimedOut)] == [(stuck, 1.0)]
        assert [e.task for e in of(seen, events.TaskRejected)] == [noop]
        pool.stop()


def noop():
    return None


class TestRunnerEvents:
    def test_worker_started_and_exited(self, clock, seen):
        """WorkerStarted(task) then WorkerExited(task, error) with the worker's error or None."""
        boom = RuntimeError("down")

        def new_worker(task):
            def run(ctx):
                if task == "bad":
                    raise boom
                ctx.wait()

            return run

        runner = Runner(new_worker, clock=clock)
        runner.apply_tasks(["good", "bad"])
        settle()
        runner.stop()
        assert sorted(e.task for e in of(seen, events.WorkerStarted)) == ["bad", "good"]
        assert sorted((e.task, e.error) for e in of(seen, events.WorkerExited)) == [
            ("bad", boom),
            ("good", None),
        ]


class TestTaskManagerEvents:
    def test_restarted_then_gave_up(self, clock, seen):
        """TaskRestarted(task_name, restarts, error) per restart, TaskGaveUp(...) at the end."""

        class Flaky:
            def name(self):
                return "flaky"

            def execute(self, ctx):
                raise ConnectionError("nope")

            def restart(self, ctx, error):
                return True

        manager = TaskManager(1, 1, None, max_restarts=2, clock=clock)
        manager.go(Flaky())
        settle()
        restarted = [(e.task_name, e.restarts, str(e.error)) for e in of(seen, events.TaskRestarted)]
        assert restarted == [("flaky", 1, "nope"), ("flaky", 2, "nope")]
        (gave_up,) = of(seen, events.TaskGaveUp)
        assert (gave_up.task_name, gave_up.restarts, str(gave_up.error)) == ("flaky", 2, "nope")
        manager.stop()


class TestJobEvents:
    def test_started_finished_skipped(self, clock, seen):
        """JobStarted, JobFinished(value, error, duration, lateness) and JobSkipped, with their fields."""
        runner = JobRunner(clock=clock)
        gate = Event()
        runner.add_job(lambda: clock.sleep(2) or "done", Every(minutes=1), id="work")
        runner.add_job(gate.wait, Every(minutes=1), id="slow")
        runner.add_job(lambda: 1 / 0, Every(minutes=1), id="bad")
        clock.advance(60)
        clock.advance(60)
        due = datetime.datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
        started = [(e.job_id, e.tick) for e in of(seen, events.JobStarted)]
        assert ("work", due) in started and ("slow", due) in started
        finished = {e.job_id: e for e in of(seen, events.JobFinished) if e.tick == due}
        assert (finished["work"].value, finished["work"].error, finished["work"].duration) == (
            "done",
            None,
            2.0,
        )
        assert finished["work"].lateness == 0.0
        assert isinstance(finished["bad"].error, PanicError)
        skips = [(e.job_id, e.reason) for e in of(seen, events.JobSkipped)]
        assert ("slow", "max_instances") in skips
        gate.set()
        clock.advance(2)
        runner.stop()

    def test_ticks_missed(self, clock, seen):
        """TicksMissed(count) when the hub was blocked past tick boundaries of polled jobs."""
        runner = JobRunner(clock=clock)
        runner.set_jobs([job("every-tick", noop)])
        clock.advance(30)
        clock.stall(200)
        assert [e.count for e in of(seen, events.TicksMissed)] == [2]
        runner.stop()

    def test_leadership_acquired_and_lost(self, clock, seen):
        """LeadershipAcquired when a runner takes the lock, LeadershipLost("lost") when another holds it,
        LeadershipLost("stopped") when it gives it up."""
        lock = LocalLock(clock=clock)
        other = lock.peer()
        runner = JobRunner(clock=clock, leader=lock, tick=60)
        runner.set_jobs([job("j", noop)])
        clock.advance(60)
        assert [type(e) for e in seen if "Leadership" in type(e).__name__] == [events.LeadershipAcquired]
        lock.release()
        assert other.acquire(600)
        clock.advance(60)
        runner_lost = [e.reason for e in of(seen, events.LeadershipLost)]
        assert runner_lost == ["lost"]
        other.release()
        clock.advance(60)
        runner.stop()
        assert [e.reason for e in of(seen, events.LeadershipLost)] == ["lost", "stopped"]


class TestPublishing:
    def test_a_raising_subscriber_is_logged_once_and_breaks_nothing(self, clock, caplog):
        """A subscriber that raises is logged once; the other subscribers and the component go on."""
        got = []

        def broken(event):
            raise RuntimeError("subscriber bug")

        zope.event.subscribers.extend([broken, got.append])
        try:
            with caplog.at_level(logging.ERROR, logger="greenworks.events"):
                pool = Dispatcher(10, 1, 1, clock=clock).start()
                assert pool.submit(lambda: 42).get(timeout=5) == 42
                pool.stop()
        finally:
            zope.event.subscribers.remove(broken)
            zope.event.subscribers.remove(got.append)
        assert [type(e) for e in got] == [events.ComponentStarted, events.ComponentStopped]
        assert len([r for r in caplog.records if "subscriber bug" in str(r.exc_info)]) == 1

    def test_no_event_is_built_without_a_subscriber(self, clock, monkeypatch):
        """With no subscriber, emitting never builds an event."""
        built = []
        original = events.GreenworksEvent.__init__

        def counting(self, *args):
            built.append(type(self))
            original(self, *args)

        monkeypatch.setattr(events.GreenworksEvent, "__init__", counting)
        assert zope.event.subscribers == []
        pool = Dispatcher(10, 1, 1, clock=clock).start()
        pool.submit(noop).get(timeout=5)
        pool.stop()
        assert built == []
