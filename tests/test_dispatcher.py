"""Tests for greenworks.dispatcher: the seed-001 checklist, fixes, extensions and invariants."""

import json
import logging

import gevent
import pytest
from gevent.event import Event
from gevent.queue import Full
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from zope.interface.verify import verifyClass, verifyObject

from greenworks import _greenlets
from greenworks.dispatcher import (
    DEFAULT_TASK_TIMEOUT,
    DEFAULT_WAIT_BETWEEN_SCALE_DOWNS,
    Dispatcher,
    RetryTask,
    Status,
    TaskStack,
)
from greenworks.exceptions import EmptyStackError, InvalidArgument
from greenworks.interfaces import IDispatcher, IDispatchTask, ITaskStack
from greenworks.testing import FakeClock, settle


@pytest.fixture
def make(clock):
    """Build Dispatchers on the test's FakeClock and quit every one of them afterwards."""
    made = []

    def factory(*args, **kwargs):
        kwargs.setdefault("clock", clock)
        dispatcher = Dispatcher(*args, **kwargs)
        made.append(dispatcher)
        return dispatcher

    yield factory
    for dispatcher in made:
        dispatcher.quit(drain=False)


class Gate:
    """Tasks that block until the test opens the gate, recording the order they started in."""

    def __init__(self):
        self.opened = Event()
        self.started = []
        self.finished = []

    def task(self, key):
        def run():
            self.started.append(key)
            self.opened.wait()
            self.finished.append(key)

        return run


class Counter:
    def __init__(self):
        self.runs = {}

    def task(self, key):
        def run():
            self.runs[key] = self.runs.get(key, 0) + 1

        return run


class TestInterfaces:
    def test_dispatcher_provides_idispatcher(self):
        """Dispatcher implements every method and attribute of IDispatcher."""
        assert verifyClass(IDispatcher, Dispatcher)
        assert verifyObject(IDispatcher, Dispatcher(1, 1, 1))

    def test_task_stack_provides_itaskstack(self):
        """TaskStack implements ITaskStack."""
        assert verifyClass(ITaskStack, TaskStack)
        assert verifyObject(ITaskStack, TaskStack())

    def test_retry_task_provides_idispatchtask(self):
        """RetryTask implements IDispatchTask."""
        assert verifyClass(IDispatchTask, RetryTask)
        assert verifyObject(IDispatchTask, RetryTask(lambda: None, lambda: False, 1, 0.0))


class TestConstruction:
    def test_keeps_valid_bounds(self):
        """Bounds a pool can run with are kept as given."""
        dispatcher = Dispatcher(5, 2, 8)
        assert (dispatcher.min_workers, dispatcher.max_workers) == (2, 8)

    @pytest.mark.parametrize(
        ("args", "name"),
        [((5, -3, 2), "min_workers"), ((5, 4, 2), "min_workers"), ((10, 0, 0), "max_workers")],
    )
    def test_refuses_bounds_that_cannot_run(self, args, name):
        """[issue 14 item 3] max_workers < 1, min_workers < 0 and min > max raise instead of being clamped."""
        with pytest.raises(InvalidArgument, match=name):
            Dispatcher(*args)

    @pytest.mark.parametrize(
        ("kwargs", "name"),
        [
            ({"max_buffered": -1}, "max_buffered"),
            ({"max_buffered": 1.5}, "max_buffered"),
            ({"min_workers": "2"}, "min_workers"),
            ({"max_workers": None}, "max_workers"),
            ({"max_workers": True}, "max_workers"),
            ({"task_timeout": 0}, "task_timeout"),
            ({"wait_between_scale_downs": -1}, "wait_between_scale_downs"),
            ({"overflow": "lifo"}, "overflow"),
            ({"name": ""}, "name"),
            ({"clock": object()}, "clock"),
        ],
    )
    def test_bad_arguments_name_themselves(self, kwargs, name):
        """A bad argument raises InvalidArgument (a ValueError) naming it and its value."""
        args = {"max_buffered": 1, "min_workers": 1, "max_workers": 1}
        args.update(kwargs)
        with pytest.raises(InvalidArgument, match=name) as info:
            Dispatcher(**args)
        assert isinstance(info.value, ValueError)

    def test_constants(self):
        """[MATCH] Constants: scale-down wait 300 s, task timeout 10 s, Status 0/1/2/3."""
        assert DEFAULT_WAIT_BETWEEN_SCALE_DOWNS == 300.0
        assert DEFAULT_TASK_TIMEOUT == 10.0
        assert [Status.STOPPED, Status.STOPPING, Status.RUNNING, Status.DRAINING] == [0, 1, 2, 3]

    def test_dispatch_rejects_a_non_task(self, make):
        """dispatch() of a non-callable non-IDispatchTask raises InvalidArgument naming task."""
        with pytest.raises(InvalidArgument, match="task"):
            make(1, 1, 1).dispatch(42)


class TestLifecycle:
    def test_status_moves_through_running_stopping_stopped(self, make):
        """[MATCH] status goes STOPPED -> RUNNING on run(), STOPPING during quit(False), STOPPED after."""
        dispatcher, gate = make(5, 1, 1), Gate()
        assert dispatcher.status is Status.STOPPED
        dispatcher.run()
        assert dispatcher.status is Status.RUNNING
        dispatcher.dispatch(gate.task(0))
        settle()
        quitter = gevent.spawn(dispatcher.quit, False)
        settle()
        assert dispatcher.status is Status.STOPPING
        gate.opened.set()
        quitter.get()
        assert dispatcher.status is Status.STOPPED

    def test_status_is_draining_during_quit_true(self, make):
        """[MATCH] status is DRAINING during quit(True) and STOPPED afterwards."""
        dispatcher, gate = make(5, 1, 1), Gate()
        dispatcher.run()
        dispatcher.dispatch(gate.task(0))
        settle()
        quitter = gevent.spawn(dispatcher.quit, True)
        settle()
        assert dispatcher.status is Status.DRAINING
        gate.opened.set()
        quitter.get()
        assert dispatcher.status is Status.STOPPED

    def test_run_twice_is_harmless(self, make):
        """[MATCH] run() while not STOPPED does nothing: no extra workers, tasks still run."""
        dispatcher, counter = make(10, 2, 2), Counter()
        dispatcher.run()
        dispatcher.run()
        settle()
        assert dispatcher.worker_count == 2
        dispatcher.dispatch(counter.task("a"))
        settle()
        assert counter.runs == {"a": 1}

    def test_run_starts_exactly_min_workers(self, make):
        """[MATCH] run() starts exactly min workers, named after the dispatcher."""
        dispatcher = make(10, 3, 10, name="pool")
        dispatcher.run()
        settle()
        assert dispatcher.worker_count == 3
        names = sorted(g.name for g in _greenlets.alive() if g.name.startswith("greenworks.pool["))
        assert names == ["greenworks.pool[0]", "greenworks.pool[1]", "greenworks.pool[2]"]

    def test_quit_stops_every_worker_at_min(self, make):
        """[FIX] quit() stops every worker even when the pool is at min; nothing is left running."""
        dispatcher = make(10, 4, 4, name="atmin")
        dispatcher.run()
        settle()
        dispatcher.quit(False)
        assert dispatcher.worker_count == 0
        assert not [g for g in _greenlets.alive() if g.name.startswith("greenworks.atmin")]

    def test_run_after_scale_up_and_quit_runs_tasks(self, make):
        """[FIX] run() -> scale-up -> quit() -> run() -> dispatch() runs the task."""
        dispatcher, gate, counter = make(1, 1, 8), Gate(), Counter()
        dispatcher.run()
        for key in range(8):
            dispatcher.dispatch(gate.task(key))
        settle()
        assert dispatcher.stats()["scale_ups"] >= 1
        gate.opened.set()
        dispatcher.quit(False)
        dispatcher.run()
        dispatcher.dispatch(counter.task("after"))
        settle()
        assert counter.runs == {"after": 1}

    def test_quit_from_inside_a_task_does_not_deadlock(self, make):
        """quit(drain=True) called by a task waits for the other tasks, not for itself."""
        dispatcher, counter = make(10, 2, 2), Counter()
        dispatcher.run()
        done = Event()

        def quitter():
            dispatcher.quit(True)
            done.set()

        dispatcher.dispatch(quitter)
        for key in range(5):
            dispatcher.dispatch(counter.task(key))
        assert done.wait(5)
        assert dispatcher.status is Status.STOPPED
        assert counter.runs == dict.fromkeys(range(5), 1)


class TestDispatch:
    def test_false_when_full_but_task_still_runs(self, make):
        """[MATCH] dispatch() is True while the buffer has room, False when full; a False task still runs."""
        dispatcher, counter = make(2, 1, 1), Counter()
        results = [dispatcher.dispatch(counter.task(key)) for key in range(8)]
        assert results == [True, True, False, False, False, False, False, False]
        dispatcher.run()
        settle()
        assert counter.runs == dict.fromkeys(range(8), 1)

    def test_dispatch_before_run_runs_after_run(self, make):
        """[MATCH] dispatch() before run() buffers tasks and they all run after run()."""
        dispatcher, counter = make(10, 1, 1), Counter()
        for key in range(5):
            dispatcher.dispatch(counter.task(key))
        settle()
        assert counter.runs == {}
        assert dispatcher.stats()["buffered"] == 5
        dispatcher.run()
        settle()
        assert counter.runs == dict.fromkeys(range(5), 1)

    def test_5000_tasks_run_exactly_once(self, make):
        """[MATCH] 5000 tasks through (1000, 10, 100) all run exactly once."""
        dispatcher, counter = make(1000, 10, 100), Counter()
        dispatcher.run()
        for key in range(5000):
            dispatcher.dispatch(counter.task(key))
        dispatcher.quit(True)
        assert counter.runs == dict.fromkeys(range(5000), 1)
        assert dispatcher.stats()["executed"] == 5000

    def test_failing_task_does_not_kill_worker(self, make, caplog):
        """[MATCH] A task that raises does not kill its worker; it is counted and logged once."""
        dispatcher, counter = make(10, 1, 1), Counter()
        dispatcher.run()
        settle()
        (worker,) = [g for g in _greenlets.alive() if g.name == "greenworks.dispatcher[0]"]

        def boom():
            raise RuntimeError("boom")

        with caplog.at_level(logging.ERROR, logger="greenworks.dispatcher"):
            dispatcher.dispatch(boom)
            dispatcher.dispatch(counter.task("later"))
            settle()
        assert counter.runs == {"later": 1}
        assert not worker.dead
        assert dispatcher.stats()["failed"] == 1
        assert len([r for r in caplog.records if r.exc_info and r.exc_info[1].args == ("boom",)]) == 1

    def test_idispatch_task_execute_is_called(self, make):
        """An IDispatchTask runs through its execute() method."""
        dispatcher, ran = make(10, 1, 1), []

        class Task:
            def execute(self):
                ran.append(self)

        task = Task()
        dispatcher.run()
        dispatcher.dispatch(task)
        settle()
        assert ran == [task]

    def test_min_workers_zero_scales_from_zero(self, make):
        """[FIX] min_workers=0 still runs tasks: the pool scales up from 0."""
        dispatcher, counter = make(10, 0, 4), Counter()
        dispatcher.run()
        settle()
        assert dispatcher.worker_count == 0
        for key in range(5):
            dispatcher.dispatch(counter.task(key))
        settle()
        assert counter.runs == dict.fromkeys(range(5), 1)
        assert dispatcher.worker_count >= 1

    def test_zero_buffer_hands_off_to_idle_workers(self, make):
        """With max_buffered=0 a task is accepted only when an idle worker takes it; the rest overflow."""
        dispatcher, counter = make(0, 2, 2), Counter()
        dispatcher.run()
        settle()
        results = [dispatcher.dispatch(counter.task(key)) for key in range(4)]
        assert results == [True, True, False, False]
        settle()
        assert counter.runs == dict.fromkeys(range(4), 1)

    def test_overflow_stack_is_lifo(self, make):
        """[FIX/DECIDE] overflow="stack": buffered tasks run FIFO, then overflowed ones LIFO (Go's order)."""
        dispatcher, gate = make(2, 1, 1), Gate()
        dispatcher.run()
        dispatcher.dispatch(gate.task("blocker"))
        settle()
        for key in range(8):
            dispatcher.dispatch(gate.task(key))
        assert dispatcher.overflow.size() == 6
        gate.opened.set()
        settle()
        assert gate.started == ["blocker", 0, 1, 7, 6, 5, 4, 3, 2]

    def test_taking_a_task_refills_the_buffer_from_overflow(self, make):
        """When a worker takes a buffered task, an overflowed one moves into the buffer at once."""
        dispatcher, first, second = make(2, 1, 1), Gate(), Gate()
        dispatcher.run()
        dispatcher.dispatch(first.task("blocker"))
        settle()
        dispatcher.dispatch(second.task(0))
        for key in range(1, 5):
            dispatcher.dispatch(first.task(key))
        assert (dispatcher.stats()["buffered"], dispatcher.stats()["overflowed"]) == (2, 3)
        first.opened.set()
        settle()
        assert second.started == [0]
        assert (dispatcher.stats()["buffered"], dispatcher.stats()["overflowed"]) == (2, 2)
        assert dispatcher.dispatch(first.task("late")) is False
        second.opened.set()
        settle()
        assert sorted(first.finished, key=str) == sorted(["blocker", 1, 2, 3, 4, "late"], key=str)

    def test_overflow_queue_is_fifo(self, make):
        """[FIX/DECIDE] overflow="queue" keeps dispatch order for overflowed tasks."""
        dispatcher, gate = make(2, 1, 1, overflow="queue"), Gate()
        dispatcher.run()
        dispatcher.dispatch(gate.task("blocker"))
        settle()
        for key in range(8):
            dispatcher.dispatch(gate.task(key))
        assert dispatcher.overflow is None
        gate.opened.set()
        settle()
        assert gate.started == ["blocker", *range(8)]

    def test_overflow_reject_drops_and_counts(self, make):
        """overflow="reject": a task that finds the buffer full is not kept, and it is counted."""
        dispatcher, counter = make(2, 1, 1, overflow="reject"), Counter()
        results = [dispatcher.dispatch(counter.task(key)) for key in range(4)]
        assert results == [True, True, False, False]
        dispatcher.run()
        settle()
        assert counter.runs == {0: 1, 1: 1}
        assert dispatcher.stats()["rejected"] == 2

    def test_overflow_logging_at_multiples_of_20_is_safe(self, make, caplog):
        """[FIX] At overflow sizes that are multiples of 20 only a summary is logged; nothing crashes."""
        dispatcher, gate = make(1, 1, 1), Gate()
        dispatcher.run()
        dispatcher.dispatch(gate.task("blocker"))
        settle()
        with caplog.at_level(logging.DEBUG, logger="greenworks.dispatcher"):
            for key in range(101):
                dispatcher.dispatch(gate.task(key))
        summaries = [r.getMessage() for r in caplog.records if "tasks in overflow" in r.getMessage()]
        assert summaries == [
            "dispatcher 'dispatcher': %d tasks in overflow" % n for n in (20, 40, 60, 80, 100)
        ]
        gate.opened.set()
        dispatcher.quit(True)
        assert sorted(gate.finished, key=str) == sorted(["blocker", *range(101)], key=str)

    def test_block_waits_for_room(self, make):
        """dispatch(block=True) waits until the buffer has room and then returns True."""
        dispatcher, gate = make(1, 1, 1), Gate()
        dispatcher.run()
        dispatcher.dispatch(gate.task("blocker"))
        settle()
        dispatcher.dispatch(gate.task("buffered"))
        waiter = gevent.spawn(dispatcher.dispatch, gate.task("blocked"), block=True)
        settle()
        assert not waiter.ready()
        gate.opened.set()
        assert waiter.get() is True
        settle()
        assert gate.finished == ["blocker", "buffered", "blocked"]

    def test_block_timeout_falls_back_to_overflow(self, make, clock):
        """dispatch(block=True, timeout=t) returns False after t clock seconds; the task still runs."""
        dispatcher, gate = make(1, 1, 1), Gate()
        dispatcher.run()
        dispatcher.dispatch(gate.task("blocker"))
        settle()
        dispatcher.dispatch(gate.task("buffered"))
        waiter = gevent.spawn(dispatcher.dispatch, gate.task("late"), block=True, timeout=5)
        settle()
        clock.advance(4.9)
        assert not waiter.ready()
        clock.advance(0.2)
        assert waiter.get() is False
        gate.opened.set()
        settle()
        assert "late" in gate.finished


class TestHandOut:
    @staticmethod
    def switches_into_workers(action):
        """Run *action*, then settle; return how many switches went into this pool's worker greenlets."""
        import greenlet

        into = []

        def trace(event, args):
            if event == "switch" and getattr(args[1], "name", "").startswith("greenworks.dispatcher["):
                into.append(args[1])
            if previous is not None:
                previous(event, args)

        previous = greenlet.settrace(trace)
        try:
            action()
            settle()
        finally:
            greenlet.settrace(previous)
        return into

    def test_a_burst_of_trivial_tasks_wakes_one_worker(self, make):
        """100 quick tasks, 10 parked workers: one switch into one worker runs them all (none wasted)."""
        dispatcher, counter = make(100, 10, 10), Counter()
        dispatcher.run()
        settle()
        into = self.switches_into_workers(lambda: [dispatcher.dispatch(counter.task(k)) for k in range(100)])
        assert counter.runs == dict.fromkeys(range(100), 1)
        assert len(into) == 1

    def test_a_burst_of_blocking_tasks_starts_every_worker_in_one_hub_pass(self, make):
        """Tasks that block start one worker each from the one hand-out callback: eager start-up for I/O."""
        dispatcher, gate = make(100, 10, 10), Gate()
        dispatcher.run()
        settle()
        for key in range(10):
            dispatcher.dispatch(gate.task(key))
        # One pass of the hub (a yield, not a timed wait): the hand-out runs in it.
        gevent.sleep(0)
        assert sorted(gate.started) == list(range(10))
        gate.opened.set()


class TestScaling:
    def test_burst_grows_by_doubling_never_above_max(self, make):
        """[MATCH] With a burst of blocking tasks the pool doubles 1 -> 2 -> 4 -> 8 and stops at max (6)."""
        dispatcher, gate = make(1, 1, 6), Gate()
        dispatcher.run()
        settle()
        sizes = []
        for key in range(30):
            dispatcher.dispatch(gate.task(key))
            if not sizes or sizes[-1] != dispatcher.worker_count:
                sizes.append(dispatcher.worker_count)
            settle()
            assert dispatcher.worker_count <= 6
        assert sizes == [1, 2, 4, 6]
        assert len(gate.started) == 6
        gate.opened.set()

    def test_growing_does_not_stop_running_workers(self, make):
        """Scaling up keeps the running workers' greenlets (Go replaced them all)."""
        dispatcher, gate = make(1, 2, 16), Gate()
        dispatcher.run()
        settle()
        before = {g for g in _greenlets.alive() if g.name.startswith("greenworks.dispatcher[")}
        for key in range(10):
            dispatcher.dispatch(gate.task(key))
        settle()
        after = {g for g in _greenlets.alive() if g.name.startswith("greenworks.dispatcher[")}
        assert before < after
        gate.opened.set()

    def test_halves_after_quiet_period_never_below_min(self, make, clock):
        """[MATCH] After wait_between_scale_downs with no dispatch the pool halves, never below min."""
        dispatcher, gate = make(1, 3, 16, wait_between_scale_downs=60, task_timeout=None), Gate()
        dispatcher.run()
        for key in range(20):
            dispatcher.dispatch(gate.task(key))
        settle()
        assert dispatcher.worker_count == 16
        gate.opened.set()
        settle()
        clock.advance(60)  # the first period saw dispatches: no scale-down
        assert dispatcher.worker_count == 16
        counts = []
        for _ in range(4):
            clock.advance(60)
            counts.append(dispatcher.worker_count)
        assert counts == [8, 4, 3, 3]
        assert dispatcher.stats()["scale_downs"] == 3

    def test_no_scale_down_while_work_waits(self, make, clock):
        """The pool does not shrink while tasks wait in the buffer, even without new dispatches."""
        dispatcher, gate = make(1, 1, 2, wait_between_scale_downs=60, task_timeout=None), Gate()
        dispatcher.run()
        for key in range(4):
            dispatcher.dispatch(gate.task(key))
        settle()
        clock.advance(180)
        assert dispatcher.worker_count == 2
        gate.opened.set()

    def test_warns_when_pinned_at_max_rate_limited(self, make, clock, caplog):
        """A supervisor warns when every worker is busy at max with work waiting, at most once a minute."""
        dispatcher, gate = make(1, 1, 2, task_timeout=100), Gate()
        dispatcher.run()
        for key in range(4):
            dispatcher.dispatch(gate.task(key))
        settle()
        with caplog.at_level(logging.WARNING, logger="greenworks.dispatcher"):
            clock.advance(10)  # the first watchdog look (task_timeout / 10)
            clock.advance(40)
            pinned = [r for r in caplog.records if "busy at max_workers" in r.getMessage()]
            assert len(pinned) == 1
            clock.advance(20)
            pinned = [r for r in caplog.records if "busy at max_workers" in r.getMessage()]
            assert len(pinned) == 2
        gate.opened.set()

    def test_resize_grows_and_shrinks_bounds(self, make):
        """resize() moves a running pool into new bounds: up to a new min, down to a new max."""
        dispatcher = make(10, 1, 4)
        dispatcher.run()
        settle()
        dispatcher.resize(min_workers=6, max_workers=6)
        settle()
        assert (dispatcher.min_workers, dispatcher.max_workers, dispatcher.worker_count) == (6, 6, 6)
        dispatcher.resize(min_workers=0, max_workers=2)
        settle()
        assert dispatcher.worker_count == 2
        with pytest.raises(InvalidArgument, match="max_workers"):
            dispatcher.resize(max_workers=2.5)

    @pytest.mark.parametrize(("bounds", "name"), [((0, 0), "max_workers"), ((3, None), "min_workers")])
    def test_resize_refuses_bounds_that_cannot_run(self, make, bounds, name):
        """[issue 14 item 3] resize(0, 0) and a min above the max raise; the bounds stay as they were."""
        dispatcher = make(10, 1, 2)
        with pytest.raises(InvalidArgument, match=name):
            dispatcher.resize(*bounds)
        assert (dispatcher.min_workers, dispatcher.max_workers) == (1, 2)


class TestQuit:
    def test_quit_false_keeps_backlog_and_finishes_in_flight(self, make):
        """[MATCH] quit(False) lets in-flight tasks finish and keeps the backlog, unrun, for run()."""
        dispatcher, gate, counter = make(1, 1, 2), Gate(), Counter()
        dispatcher.run()
        dispatcher.dispatch(gate.task("a"))
        dispatcher.dispatch(gate.task("b"))
        settle()
        for key in range(10):
            dispatcher.dispatch(counter.task(key))
        quitter = gevent.spawn(dispatcher.quit, False)
        settle()
        assert not quitter.ready()
        gate.opened.set()
        quitter.get()
        assert sorted(gate.finished) == ["a", "b"]
        assert counter.runs == {}
        assert dispatcher.stats()["buffered"] + dispatcher.stats()["overflowed"] == 10
        dispatcher.run()
        settle()
        assert counter.runs == dict.fromkeys(range(10), 1)

    def test_dispatch_during_quit_false_is_kept(self, make):
        """[FIX] A task dispatched while quit(False) is in progress is not lost: it runs on the next run()."""
        dispatcher, gate, counter = make(5, 1, 1), Gate(), Counter()
        dispatcher.run()
        dispatcher.dispatch(gate.task("in-flight"))
        settle()
        quitter = gevent.spawn(dispatcher.quit, False)
        settle()
        assert dispatcher.dispatch(counter.task("during")) is True
        gate.opened.set()
        quitter.get()
        assert counter.runs == {}
        dispatcher.run()
        settle()
        assert counter.runs == {"during": 1}

    def test_drain_runs_every_task(self, make):
        """[FIX] quit(True) runs every buffered and overflowed task, plus one dispatched while draining."""
        dispatcher, counter = make(100, 1, 20), Counter()
        dispatcher.run()

        def slow(key):
            def run():
                gevent.sleep(0)
                counter.runs[key] = counter.runs.get(key, 0) + 1

            return run

        for key in range(1000):
            dispatcher.dispatch(slow(key))
        late = gevent.spawn(dispatcher.dispatch, counter.task("late"))
        dispatcher.quit(True)
        late.get()
        assert counter.runs == {**dict.fromkeys(range(1000), 1), "late": 1}
        assert dispatcher.worker_count == 0

    def test_quit_false_during_drain_stops_draining(self, make):
        """quit(False) during a drain stops draining: both calls return once stopped, the backlog is kept."""
        dispatcher, gate, counter = make(10, 1, 1), Gate(), Counter()
        dispatcher.run()
        dispatcher.dispatch(gate.task("in-flight"))
        for key in range(3):
            dispatcher.dispatch(counter.task(key))
        settle()
        draining = gevent.spawn(dispatcher.quit, True)
        settle()
        stopping = gevent.spawn(dispatcher.quit, False)
        settle()
        assert dispatcher.status is Status.STOPPING
        gate.opened.set()
        draining.get()
        stopping.get()
        assert dispatcher.status is Status.STOPPED
        assert counter.runs == {}
        assert dispatcher.stats()["buffered"] == 3

    def test_drain_with_no_workers_starts_one(self, make):
        """quit(True) with min_workers=0 runs a backlog queued before run() on a worker it starts."""
        dispatcher, counter = make(5, 0, 1), Counter()
        for key in range(5):
            dispatcher.dispatch(counter.task(key))
        assert dispatcher.worker_count == 0
        dispatcher.run()
        dispatcher.quit(True)
        assert counter.runs == dict.fromkeys(range(5), 1)
        assert dispatcher.worker_count == 0

    def test_quit_before_run_and_twice_is_harmless(self, make):
        """quit() before run() or twice in a row is a no-op."""
        dispatcher = make(1, 1, 1)
        dispatcher.quit(True)
        dispatcher.run()
        dispatcher.quit(False)
        dispatcher.quit(False)
        assert dispatcher.status is Status.STOPPED


class TestTimeoutsAndSubmit:
    def test_task_timeout_interrupts_and_worker_survives(self, make, clock, caplog):
        """[EXT] A task over task_timeout gets a gevent.Timeout; it is counted and logged once."""
        dispatcher, counter = make(10, 1, 1, task_timeout=1.0), Counter()
        dispatcher.run()
        hang, interrupted = Event(), []

        def stuck():
            try:
                hang.wait()
            except gevent.Timeout as exc:
                interrupted.append(exc)
                raise

        with caplog.at_level(logging.WARNING, logger="greenworks.dispatcher"):
            dispatcher.dispatch(stuck)
            settle()
            clock.advance(0.95)
            assert interrupted == []
            clock.advance(0.3)
            assert len(interrupted) == 1
            dispatcher.dispatch(counter.task("next"))
            settle()
        assert counter.runs == {"next": 1}
        assert dispatcher.stats()["timed_out"] == 1
        assert len([r for r in caplog.records if "interrupted" in r.getMessage()]) == 1

    def test_fast_tasks_are_never_interrupted(self, make, clock):
        """Tasks that each finish within task_timeout are never interrupted, however long the pool runs."""
        dispatcher = make(10, 1, 1, task_timeout=1.0)
        dispatcher.run()
        for _ in range(10):
            done = Event()
            dispatcher.dispatch(lambda done=done: clock.sleep(0.5) or done.set())
            settle()
            clock.advance(0.5)
            assert done.is_set()
        assert dispatcher.stats()["timed_out"] == 0

    def test_submit_returns_result_and_exception(self, make):
        """[EXT] submit() returns an AsyncResult with the call's value or its exception."""
        dispatcher = make(10, 1, 1)
        dispatcher.run()
        ok = dispatcher.submit(lambda a, b=0: a + b, 2, b=3)

        def fail():
            raise KeyError("nope")

        bad = dispatcher.submit(fail)
        assert ok.get() == 5
        with pytest.raises(KeyError):
            bad.get()
        assert dispatcher.stats()["failed"] == 1

    def test_submit_gets_timeout(self, make, clock):
        """[EXT] A submitted call interrupted by task_timeout delivers the Timeout to its AsyncResult."""
        dispatcher = make(10, 1, 1, task_timeout=2.0)
        dispatcher.run()
        result = dispatcher.submit(Event().wait)
        settle()
        clock.advance(3)
        with pytest.raises(gevent.Timeout):
            result.get(block=False)

    def test_submit_rejected_sets_full(self, make):
        """submit() with overflow="reject" and a full buffer gives an AsyncResult holding queue.Full."""
        dispatcher = make(1, 1, 1, overflow="reject")
        dispatcher.submit(lambda: 1)
        with pytest.raises(Full):
            dispatcher.submit(lambda: 2).get(block=False)


class TestIntrospection:
    def test_stats_and_snapshot(self, make):
        """stats() counts workers and outcomes; snapshot() is JSON-serialisable with bounds and status."""
        dispatcher, counter = make(10, 2, 2, name="web"), Counter()
        dispatcher.run()
        for key in range(3):
            dispatcher.dispatch(counter.task(key))
        settle()
        stats = dispatcher.stats()
        assert {k: stats[k] for k in ("workers", "busy", "idle", "executed", "failed", "timed_out")} == {
            "workers": 2,
            "busy": 0,
            "idle": 2,
            "executed": 3,
            "failed": 0,
            "timed_out": 0,
        }
        snap = json.loads(json.dumps(dispatcher.snapshot()))
        assert snap["component"] == "dispatcher"
        assert (snap["name"], snap["status"], snap["min_workers"], snap["max_workers"]) == (
            "web",
            "RUNNING",
            2,
            2,
        )
        for key in ("buffered", "overflowed", "scale_ups", "scale_downs"):
            assert key in snap

    def test_dispatched_counts_every_accepted_task_wherever_it_is(self, make):
        """stats()["dispatched"] counts each dispatch: done, running, queued, blocked or cancelled."""
        dispatcher, gate, counter = make(1, 1, 1), Gate(), Counter()
        dispatcher.run()
        dispatcher.dispatch(counter.task("done"))
        settle()
        assert dispatcher.stats()["dispatched"] == 1
        dispatcher.dispatch(gate.task("running"))
        settle()
        dispatcher.dispatch(gate.task("buffered"))
        dispatcher.dispatch(gate.task("overflowed"))
        blocked = gevent.spawn(dispatcher.dispatch, gate.task("blocked"), block=True)
        settle()
        stats = dispatcher.stats()
        assert (stats["executed"], stats["busy"], stats["buffered"], stats["overflowed"]) == (1, 1, 1, 1)
        assert stats["dispatched"] == 5
        blocked.kill()
        assert dispatcher.stats()["dispatched"] == 5
        # Kills the running task and cancels the buffered and overflowed ones.
        assert dispatcher.stop(timeout=0, drain=False, cancel_pending=True) is False
        stats = dispatcher.stats()
        assert (stats["dispatched"], stats["executed"]) == (5, 1)
        assert (stats["buffered"], stats["overflowed"]) == (0, 0)

    def test_dispatched_counts_rejected_and_killed_tasks(self, make):
        """A rejected task and one whose worker was killed while running it stay counted as dispatched."""
        dispatcher, gate = make(1, 1, 1, overflow="reject"), Gate()
        dispatcher.run()
        dispatcher.dispatch(gate.task("killed"))
        settle()
        dispatcher.dispatch(gate.task("buffered"))
        assert dispatcher.dispatch(gate.task("rejected")) is False
        assert dispatcher.stats()["dispatched"] == 3
        assert dispatcher.stop(timeout=0, drain=False) is False
        stats = dispatcher.stats()
        assert (stats["dispatched"], stats["executed"], stats["rejected"], stats["buffered"]) == (3, 0, 1, 1)


class TestTaskStack:
    def test_lifo_and_empty_errors(self):
        """TaskStack is LIFO; pop()/peek() on empty raise EmptyStackError, an IndexError."""
        stack = TaskStack()
        with pytest.raises(EmptyStackError):
            stack.pop()
        with pytest.raises(IndexError):
            stack.peek()
        for item in "abc":
            stack.push(item)
        assert (stack.size(), stack.peek()) == (3, "c")
        assert [stack.pop(), stack.pop(), stack.pop()] == ["c", "b", "a"]


class TestRetryTask:
    def test_v1_semantics(self, clock):
        """[MATCH] RetryTask: attempt i starts after sleeping 5*i*period, at most n attempts, returns None."""
        starts = []
        task = RetryTask(lambda: starts.append(clock.monotonic()), lambda: True, 4, 1.0, clock=clock)
        runner = gevent.spawn(task.execute)
        begin = clock.monotonic()
        settle()
        while not runner.ready():
            assert clock.advance_to_next() > 0
        assert runner.get() is None
        assert [s - begin for s in starts] == [0, 5, 15, 30]

    def test_stops_when_retry_false_and_ignores_errors(self, clock):
        """[MATCH] RetryTask stops once retry() is False, never passes errors on, and returns None."""
        calls, answers = [], iter([True, False, True])

        def fail():
            calls.append(1)
            raise RuntimeError("ignored")

        task = RetryTask(fail, lambda: next(answers), 10, 0.5, clock=clock)
        runner = gevent.spawn(task.execute)
        settle()
        while not runner.ready():
            assert clock.advance_to_next() > 0
        assert runner.get() is None
        assert len(calls) == 2

    def test_bad_arguments(self):
        """RetryTask names a bad argument."""
        with pytest.raises(InvalidArgument, match="retries"):
            RetryTask(lambda: None, lambda: True, "3", 1.0)
        with pytest.raises(InvalidArgument, match="period"):
            RetryTask(lambda: None, lambda: True, 3, -1)


class TestExactlyOnce:
    @pytest.mark.timeout(60)
    def test_100k_tasks_across_bursts_with_scaling(self, make, clock):
        """100k tasks in bursts, with scale-ups and scale-downs on a FakeClock, each run exactly once."""
        dispatcher = make(1000, 1, 64, wait_between_scale_downs=10)
        runs = bytearray(100_000)

        def task_for(key):
            def run():
                runs[key] += 1
                if key % 97 == 0:
                    gevent.sleep(0)

            return run

        dispatcher.run()
        for burst in range(10):
            for key in range(burst * 10_000, (burst + 1) * 10_000):
                dispatcher.dispatch(task_for(key))
            settle()
            clock.advance(10)
            clock.advance(10)
        dispatcher.quit(True)
        assert runs.count(1) == 100_000
        stats = dispatcher.stats()
        assert stats["scale_ups"] > 1 and stats["scale_downs"] > 1
        assert stats["executed"] == 100_000


class DispatcherMachine(RuleBasedStateMachine):
    """Random dispatch / run / quit / resize / time sequences never lose or duplicate a task."""

    def __init__(self):
        super().__init__()
        self.clock = FakeClock()
        self.dispatcher = Dispatcher(3, 1, 4, wait_between_scale_downs=5, clock=self.clock)
        self.runs = {}
        self.next_key = 0

    def _task(self, key, yields):
        def run():
            for _ in range(yields):
                gevent.sleep(0)
            self.runs[key] = self.runs.get(key, 0) + 1

        return run

    @rule(count=st.integers(1, 12), yields=st.integers(0, 2))
    def dispatch(self, count, yields):
        for _ in range(count):
            self.runs.setdefault(self.next_key, 0)
            self.dispatcher.dispatch(self._task(self.next_key, yields))
            self.next_key += 1

    @rule()
    def run(self):
        self.dispatcher.run()

    @rule(drain=st.booleans())
    def quit(self, drain):
        was_running = self.dispatcher.status is Status.RUNNING
        self.dispatcher.quit(drain)
        if drain and was_running:  # quit() of a stopped dispatcher is a no-op, as in Go
            assert all(n == 1 for n in self.runs.values())

    @rule(low=st.integers(-1, 5), high=st.integers(0, 6))
    def resize(self, low, high):
        if 0 <= low <= high and high >= 1:
            self.dispatcher.resize(low, high)
        else:
            before = (self.dispatcher.min_workers, self.dispatcher.max_workers)
            with pytest.raises(InvalidArgument):
                self.dispatcher.resize(low, high)
            assert (self.dispatcher.min_workers, self.dispatcher.max_workers) == before

    @rule(seconds=st.sampled_from([0, 1, 5, 10]))
    def advance(self, seconds):
        self.clock.advance(seconds)

    @precondition(lambda self: self.dispatcher.status is Status.RUNNING)
    @rule()
    def settle(self):
        settle()

    @invariant()
    def never_duplicated_nor_above_max(self):
        settle()
        assert all(n <= 1 for n in self.runs.values())
        assert self.dispatcher.worker_count <= self.dispatcher.max_workers
        if self.dispatcher.status is Status.STOPPED:
            assert self.dispatcher.worker_count == 0

    def teardown(self):
        self.dispatcher.run()
        self.dispatcher.quit(True)
        assert all(n == 1 for n in self.runs.values()), self.runs


TestDispatcherStateful = DispatcherMachine.TestCase
