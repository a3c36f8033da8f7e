"""GreenExecutor as a greenworks component: bounds, lifecycle, stop(timeout), task_timeout, snapshot."""

import concurrent.futures as cf
import gc
import json
import logging

import gevent
import pytest
from gevent.event import Event
from zope.interface.verify import verifyClass, verifyObject

from greenworks import State, _greenlets
from greenworks.exceptions import (
    BrokenExecutorError,
    InvalidArgument,
    ReentrantStopError,
    TaskKilledError,
)
from greenworks.executor import DEFAULT_MAX_WORKERS, GreenExecutor
from greenworks.interfaces import IComponent, IGreenExecutor
from greenworks.testing import FakeClock, settle


@pytest.fixture
def executor():
    pool = GreenExecutor(4)
    yield pool
    pool.shutdown(wait=True)


class TestInterfaces:
    def test_provides_igreenexecutor_and_icomponent(self, executor):
        """GreenExecutor is an IGreenExecutor, hence an IComponent, and a concurrent.futures.Executor."""
        verifyClass(IGreenExecutor, GreenExecutor)
        verifyObject(IGreenExecutor, executor)
        verifyObject(IComponent, executor)
        assert isinstance(executor, cf.Executor)


class TestArguments:
    @pytest.mark.parametrize(
        "kwargs, name",
        [
            ({"max_workers": 0}, "max_workers"),
            ({"max_workers": True}, "max_workers"),
            ({"max_workers": 2.5}, "max_workers"),
            ({"min_workers": -1}, "min_workers"),
            ({"max_workers": 2, "min_workers": 3}, "min_workers"),
            ({"max_buffered": -1}, "max_buffered"),
            ({"task_timeout": float("nan")}, "task_timeout"),
            ({"task_timeout": 0}, "task_timeout"),
            ({"initializer": 42}, "initializer"),
            ({"name": ""}, "name"),
            ({"clock": object()}, "clock"),
        ],
    )
    def test_bad_construction_arguments_are_refused_by_name(self, kwargs, name):
        """Each bad constructor argument raises InvalidArgument naming it, and starts nothing."""
        with pytest.raises(InvalidArgument, match=name):
            GreenExecutor(**kwargs)
        assert _greenlets.alive() == []

    def test_default_max_workers_is_sized_for_greenlets(self):
        """Without max_workers the pool may grow to DEFAULT_MAX_WORKERS (100) greenlets."""
        with GreenExecutor() as pool:
            assert pool.max_workers == DEFAULT_MAX_WORKERS == 100
            assert pool.min_workers == 0

    def test_submit_of_a_non_callable_is_refused_at_once(self, executor):
        """submit(None) raises InvalidArgument at the call, not later in the future."""
        with pytest.raises(InvalidArgument, match="fn"):
            executor.submit(None)
        assert executor.stats()["submitted"] == 0

    @pytest.mark.parametrize("kwargs", [{"timeout": "1"}, {"timeout": float("nan")}, {"chunksize": 0}])
    def test_bad_map_arguments_are_refused(self, executor, kwargs):
        """map() refuses a timeout that is not a number and a chunksize below 1."""
        with pytest.raises(InvalidArgument):
            executor.map(abs, [1], **kwargs)


class TestPool:
    def test_workers_grow_on_demand_up_to_max_workers(self, executor):
        """A burst of blocked tasks grows the pool to max_workers and no further; the rest wait."""
        gate = Event()
        futures = [executor.submit(gate.wait) for _ in range(10)]
        settle()
        stats = executor.stats()
        assert (stats["workers"], stats["running"], stats["pending"]) == (4, 4, 6)
        gate.set()
        cf.wait(futures)
        assert executor.stats()["completed"] == 10

    def test_tasks_start_in_submission_order(self):
        """With one worker the tasks run in the order they were submitted, beyond the buffer too."""
        order = []
        with GreenExecutor(1, max_buffered=2) as pool:
            for i in range(6):
                pool.submit(order.append, i)
        assert order == list(range(6))

    def test_min_workers_are_kept_idle(self):
        """min_workers greenlets exist before any task, named after the executor."""
        with GreenExecutor(4, min_workers=2, name="kept") as pool:
            settle()
            assert pool.stats()["workers"] == 2
            names = sorted(g.name for g in _greenlets.alive() if g.name.startswith("greenworks.kept["))
            assert names == ["greenworks.kept[0]", "greenworks.kept[1]"]

    def test_a_failing_task_does_not_kill_its_worker(self, executor):
        """A task's exception goes to its future and is counted; its worker lives on and work goes on."""
        worker = []

        def fail():
            worker.append(gevent.getcurrent())
            raise ZeroDivisionError

        first = executor.submit(fail)
        assert isinstance(first.exception(), ZeroDivisionError)
        settle()
        assert not worker[0].dead
        assert executor.submit(divmod, 7, 2).result() == (3, 1)
        stats = executor.stats()
        assert (stats["failed"], stats["completed"]) == (1, 1)

    def test_callbacks_run_in_the_worker_greenlet(self, executor):
        """add_done_callback runs in the worker that finished the call, as with threads."""
        where = []
        done = Event()
        future = executor.submit(int)
        future.add_done_callback(lambda f: (where.append(gevent.getcurrent().name), done.set()))
        done.wait(5)
        assert where == ["greenworks.executor[0]"]

    def test_cancelled_futures_are_skipped_and_counted(self):
        """A future cancelled while queued never runs; stats count it as cancelled once skipped."""
        gate = Event()
        ran = []
        with GreenExecutor(1) as pool:
            pool.submit(gate.wait)
            queued = pool.submit(ran.append, 1)
            assert queued.cancel()
            gate.set()
        assert ran == [] and pool.stats()["cancelled"] == 1


class TestLifecycle:
    def test_states_from_running_to_stopped(self):
        """It is running from construction, stopping while the backlog drains, then stopped."""
        gate = Event()
        pool = GreenExecutor(2)
        assert pool.state is State.RUNNING
        future = pool.submit(gate.wait)
        pool.shutdown(wait=False)
        assert pool.state is State.STOPPING
        gate.set()
        assert future.result() is True
        pool.shutdown(wait=True)
        assert pool.state is State.STOPPED

    def test_start_reopens_a_stopped_executor(self):
        """start() after a completed shutdown accepts work again; start() while stopping refuses."""
        gate = Event()
        pool = GreenExecutor(2)
        pool.submit(gate.wait)
        pool.shutdown(wait=False)
        with pytest.raises(RuntimeError, match="shutting down"):
            pool.start()
        gate.set()
        pool.shutdown()
        assert pool.start() is pool and pool.state is State.RUNNING
        assert pool.submit(abs, -3).result() == 3
        pool.shutdown()

    def test_shutdown_from_its_own_task_is_refused(self, executor):
        """shutdown(wait=True) and stop() from one of its tasks raise ReentrantStopError (a RuntimeError)."""
        assert isinstance(executor.submit(executor.shutdown).exception(), ReentrantStopError)
        assert isinstance(executor.submit(executor.stop).exception(), ReentrantStopError)

    def test_stop_in_time_returns_true(self, executor):
        """stop() waits for the work and returns True when everything ended by itself."""
        futures = [executor.submit(gevent.sleep, 0) for _ in range(8)]
        assert executor.stop() is True
        assert all(f.done() and f.exception() is None for f in futures)
        assert executor.state is State.STOPPED

    def test_stop_timeout_cancels_the_queue_and_kills_the_running(self):
        """Past stop's timeout, queued futures are cancelled and running ones fail with TaskKilledError."""
        clock = FakeClock()
        pool = GreenExecutor(1, clock=clock)
        forever = Event()
        running = pool.submit(forever.wait)
        queued = pool.submit(int)
        settle()
        stopper = gevent.spawn(pool.stop, 10.0)
        clock.wait_for_sleepers(2)  # the pool's scaler and stop's wait
        clock.advance(10.0)
        assert stopper.get(timeout=5) is False
        assert queued.cancelled()
        assert isinstance(running.exception(), TaskKilledError)
        assert isinstance(running.exception(), cf.CancelledError)
        assert pool.state is State.STOPPED

    def test_collected_executor_lets_its_workers_go(self):
        """An executor dropped without shutdown ends its greenlets once collected."""
        pool = GreenExecutor(3, min_workers=2, name="dropped")
        assert pool.submit(abs, -1).result() == 1
        del pool
        gc.collect()
        settle()
        assert not [g for g in _greenlets.alive() if g.name.startswith("greenworks.dropped")]


class TestTaskTimeout:
    def test_overrunning_task_is_interrupted_and_its_future_gets_the_timeout(self):
        """A task past task_timeout (on the clock) is interrupted; the future holds a gevent.Timeout."""
        clock = FakeClock()
        with GreenExecutor(2, task_timeout=1.0, clock=clock) as pool:
            future = pool.submit(Event().wait)
            settle()
            for _ in range(15):
                clock.advance(0.1)
            assert isinstance(future.exception(timeout=5), gevent.Timeout)
            assert pool.stats()["failed"] == 1
            assert pool.snapshot()["pool"]["timed_out"] == 1
            assert pool.submit(abs, -2).result() == 2


class TestInitializer:
    def test_initializer_runs_once_per_worker_greenlet(self):
        """Each worker greenlet runs the initializer once, before its first task."""
        calls = []
        gate = Event()

        def record(tag):
            calls.append((tag, gevent.getcurrent().name))

        with GreenExecutor(2, initializer=record, initargs=("tag",)) as pool:
            futures = [pool.submit(gate.wait) for _ in range(2)]
            settle()
            gate.set()
            cf.wait(futures)
            pool.submit(int).result()
        assert sorted(calls) == [("tag", "greenworks.executor[0]"), ("tag", "greenworks.executor[1]")]

    def test_failing_initializer_is_logged_once_and_breaks_the_executor(self, caplog):
        """The failure is logged once at ERROR; queued futures and later submits get BrokenExecutorError."""

        def fail():
            raise ValueError("no database")

        caplog.set_level(logging.ERROR, "greenworks.executor")
        with GreenExecutor(1, initializer=fail) as pool:
            futures = [pool.submit(int) for _ in range(3)]
            for future in futures:
                assert isinstance(future.exception(timeout=5), BrokenExecutorError)
            with pytest.raises(BrokenExecutorError):
                pool.submit(int)
            assert pool.snapshot()["broken"]
        assert [r.levelname for r in caplog.records if "initializer" in r.getMessage()] == ["ERROR"]


class TestReporting:
    def test_stats_count_every_outcome(self, executor):
        """stats() counts submitted, completed, failed and the pool's workers."""
        cf.wait([executor.submit(abs, -1), executor.submit(divmod, 1, 0)])
        stats = executor.stats()
        assert {k: stats[k] for k in ("submitted", "completed", "failed", "pending", "running")} == {
            "submitted": 2,
            "completed": 1,
            "failed": 1,
            "pending": 0,
            "running": 0,
        }

    def test_snapshot_is_json_with_the_header_and_the_pool(self, executor):
        """snapshot() is JSON: the header (aware started_at), bounds, stats and the pool's own snapshot."""
        executor.submit(int).result()
        snap = json.loads(json.dumps(executor.snapshot()))
        assert (snap["component"], snap["name"], snap["state"]) == ("executor", "executor", "running")
        assert snap["started_at"].endswith("+00:00")
        assert snap["max_workers"] == 4 and snap["completed"] == 1
        assert snap["pool"]["component"] == "dispatcher" and snap["pool"]["executed"] == 1
