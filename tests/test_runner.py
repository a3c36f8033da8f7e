"""Tests for greenworks.runner: the seed 000 conformance checklist, the fixes, and a stateful model."""

import dataclasses
import json
import logging

import gevent
import pytest
from gevent.event import AsyncResult, Event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from greenworks import _greenlets
from greenworks.context import with_cancel, with_timeout
from greenworks.exceptions import Canceled, DeadlineExceeded, InvalidArgument, RunnerClosedError
from greenworks.interfaces import IRunner, IWorker
from greenworks.runner import Runner, WorkerState, WorkerStatus
from greenworks.testing import settle


@dataclasses.dataclass(frozen=True)
class Key:
    name: str


class Colliding:
    """A task with a tiny hash space that records every ``__eq__`` call."""

    eq_calls = []

    def __init__(self, ident, bucket):
        self.ident = ident
        self.bucket = bucket

    def __hash__(self):
        return self.bucket

    def __eq__(self, other):
        if not isinstance(other, Colliding):
            return NotImplemented
        Colliding.eq_calls.append((hash(self), hash(other)))
        return self.ident == other.ident

    def __repr__(self):
        return "Colliding(%r, bucket=%d)" % (self.ident, self.bucket)


@implementer(IWorker)
class Worker:
    """Blocks until cancelled; with ``stubborn`` it then also waits for ``release``."""

    def __init__(self, task, stubborn=False, book=None):
        self.task = task
        self.stubborn = stubborn
        self.book = book
        self.runs = 0
        self.started = Event()
        self.cancelled = Event()
        self.release = Event()
        self.exited = Event()
        self.ctx = None

    def run(self, ctx):
        self.runs += 1
        self.ctx = ctx
        if self.book is not None:
            self.book.enter(self.task)
        self.started.set()
        try:
            ctx.wait()
            self.cancelled.set()
            if self.stubborn:
                self.release.wait()
            if self.book is not None:
                gevent.sleep(0)  # clean-up that switches, so an overlapping copy could run meanwhile
        finally:
            if self.book is not None:
                self.book.leave(self.task)
            self.exited.set()


class Book:
    """Counts workers inside ``run`` per task, remembering the peak."""

    def __init__(self):
        self.live = {}
        self.peak = {}

    def enter(self, task):
        self.live[task] = self.live.get(task, 0) + 1
        self.peak[task] = max(self.peak.get(task, 0), self.live[task])

    def leave(self, task):
        self.live[task] -= 1
        if not self.live[task]:
            del self.live[task]


class Factory:
    """A ``new_worker`` that records every call and the workers it made."""

    def __init__(self, stubborn=(), book=None):
        self.calls = []
        self.made = []
        self.stubborn = set(stubborn)
        self.book = book

    def __call__(self, task):
        self.calls.append(task)
        worker = Worker(task, stubborn=task in self.stubborn, book=self.book)
        self.made.append(worker)
        return worker

    def latest(self, task):
        return [w for w in self.made if w.task == task][-1]


def running_workers(runner):
    return [s.worker for s in runner.status() if s.state is WorkerState.RUNNING]


@pytest.fixture
def factory():
    return Factory()


@pytest.fixture
def runner(factory, clock):
    r = Runner(factory, clock=clock)
    try:
        yield r
    finally:
        for worker in factory.made:
            worker.release.set()
        r.stop()


def release_and_stop(runner, factory):
    """Let every stubborn worker go, then stop: a failed assertion must not hang the test."""
    for worker in factory.made:
        worker.release.set()
    runner.stop()


def apply_in_background(runner, tasks, **kwargs):
    result = AsyncResult()

    def go():
        try:
            result.set(runner.apply_tasks(tasks, **kwargs))
        except BaseException as exc:  # handed to the test to assert on
            result.set_exception(exc)

    return gevent.spawn(go), result


class TestInterfaces:
    def test_runner_provides_irunner(self, runner):
        """Runner implements and provides IRunner, attributes included."""
        assert verifyClass(IRunner, Runner)
        assert verifyObject(IRunner, runner)

    def test_test_worker_provides_iworker(self):
        """The IWorker contract used by these tests is the real one."""
        assert verifyObject(IWorker, Worker(Key("a")))


class TestConstruction:
    @pytest.mark.parametrize(
        "kwargs, argument",
        [
            ({"stop_timeout": -1}, "stop_timeout"),
            ({"stop_timeout": "5"}, "stop_timeout"),
            ({"stop_timeout": True}, "stop_timeout"),
            ({"restart_exited": 1}, "restart_exited"),
            ({"name": ""}, "name"),
            ({"clock": object()}, "clock"),
        ],
    )
    def test_bad_option_is_rejected_naming_it(self, kwargs, argument):
        """A bad option fails at construction with an error naming the argument and its value."""
        with pytest.raises(InvalidArgument, match=argument) as info:
            Runner(Factory(), **kwargs)
        assert repr(next(iter(kwargs.values()))) in str(info.value)

    def test_new_worker_must_be_callable(self):
        """A non-callable new_worker is rejected at construction."""
        with pytest.raises(InvalidArgument, match=r"new_worker.*42"):
            Runner(42)


class TestChecklist:
    def test_adding_tasks_keeps_existing_workers(self, runner, factory):
        """[MATCH] apply([a]) then apply([a,b,c]) leaves 3 running workers and a's worker is the same, not
        restarted."""
        a, b, c = Key("a"), Key("b"), Key("c")
        runner.apply_tasks([a])
        settle()
        first = factory.latest(a)
        runner.apply_tasks([a, b, c])
        settle()
        assert len(running_workers(runner)) == 3
        assert factory.latest(a) is first
        assert first.runs == 1 and not first.cancelled.is_set()
        assert runner.workers()[0] is first

    def test_removing_tasks_waits_for_their_workers(self, clock):
        """[MATCH] apply([a,b,c]) then apply([b]) leaves only b; a and c are cancelled and apply returns only
        after they exited."""
        a, b, c = Key("a"), Key("b"), Key("c")
        factory = Factory(stubborn=[a, c])
        runner = Runner(factory, clock=clock)
        try:
            runner.apply_tasks([a, b, c])
            settle()
            _, result = apply_in_background(runner, [b])
            settle()
            wa, wc = factory.latest(a), factory.latest(c)
            assert wa.cancelled.is_set() and wc.cancelled.is_set()
            assert not result.ready()
            wa.release.set()
            settle()
            assert not result.ready()
            wc.release.set()
            result.get(timeout=5)
            assert runner.tasks() == [b]
            assert [s.task for s in runner.status()] == [b]
            assert running_workers(runner) == [factory.latest(b)]
        finally:
            release_and_stop(runner, factory)

    def test_equal_tasks_collapse_to_the_first(self, runner, factory):
        """[MATCH] Equal tasks in one apply_tasks call produce one worker, and the first object is kept (also
        on later applies)."""
        first, second, third = Key("a"), Key("a"), Key("a")
        runner.apply_tasks([first, second])
        runner.apply_tasks([third])
        assert factory.calls == [first]
        assert factory.calls[0] is first
        assert len(runner.tasks()) == 1 and runner.tasks()[0] is first

    def test_hash_collisions_get_separate_workers(self, runner, factory):
        """[MATCH] Two unequal tasks with the same hash each get their own worker."""
        x, y = Colliding("x", 7), Colliding("y", 7)
        runner.apply_tasks([x, y])
        settle()
        assert hash(x) == hash(y) and x != y
        assert len(running_workers(runner)) == 2
        assert runner.tasks() == [x, y]
        runner.apply_tasks([y])
        assert runner.tasks() == [y]
        assert factory.latest(x).exited.is_set() and not factory.latest(y).cancelled.is_set()

    def test_equals_only_called_for_equal_hashes(self, runner):
        """[MATCH] __eq__ is only consulted between tasks whose hashes are equal."""
        Colliding.eq_calls = []
        tasks = [Colliding(i, i % 3) for i in range(9)]
        runner.apply_tasks(tasks)
        runner.apply_tasks([Colliding(i, i % 3) for i in range(0, 9, 2)])
        runner.apply_tasks([Colliding(i, i % 3) for i in range(9)])
        assert Colliding.eq_calls, "the test needs collisions to be meaningful"
        assert all(left == right for left, right in Colliding.eq_calls)

    def test_new_worker_and_run_called_once(self, runner, factory):
        """[MATCH] new_worker is called once per newly added task and run once per worker."""
        a, b, c = Key("a"), Key("b"), Key("c")
        runner.apply_tasks([a, b])
        runner.apply_tasks([a, b, c])
        runner.apply_tasks([a, b, c])
        runner.apply_tasks([c])
        runner.apply_tasks([a, c])
        settle()
        assert factory.calls == [a, b, c, a]
        assert all(worker.runs == 1 for worker in factory.made)

    def test_swap_starts_new_before_old_exited(self, clock):
        """[MATCH] For a swap [a] -> [b], b's worker starts before a's worker has finished exiting."""
        a, b = Key("a"), Key("b")
        factory = Factory(stubborn=[a])
        runner = Runner(factory, clock=clock)
        try:
            runner.apply_tasks([a])
            settle()
            _, result = apply_in_background(runner, [b])
            factory.latest(a).cancelled.wait(timeout=5)
            factory.latest(b).started.wait(timeout=5)
            assert not factory.latest(a).exited.is_set()
            assert not result.ready()
            factory.latest(a).release.set()
            result.get(timeout=5)
        finally:
            release_and_stop(runner, factory)

    def test_cancelled_ctx_syncs_but_does_not_wait(self, clock):
        """[MATCH] With an already-cancelled ctx, new workers start and stale ones are signalled, and
        Canceled is raised without waiting."""
        a, b = Key("a"), Key("b")
        factory = Factory(stubborn=[a])
        runner = Runner(factory, clock=clock)
        try:
            runner.apply_tasks([a])
            ctx = with_cancel(clock=clock)
            ctx.cancel()
            with pytest.raises(Canceled):
                runner.apply_tasks([b], ctx=ctx)
            assert factory.calls == [a, b]
            settle()
            assert factory.latest(a).cancelled.is_set() and not factory.latest(a).exited.is_set()
            assert factory.latest(b).started.is_set()
            factory.latest(a).release.set()
        finally:
            release_and_stop(runner, factory)

    def test_timeout_zero_raises_deadline_exceeded_without_waiting(self, clock):
        """[MATCH] timeout=0 completes the sync and raises DeadlineExceeded while a stale worker is still
        exiting."""
        a = Key("a")
        factory = Factory(stubborn=[a])
        runner = Runner(factory, clock=clock)
        try:
            runner.apply_tasks([a])
            settle()
            with pytest.raises(DeadlineExceeded):
                runner.apply_tasks([], timeout=0)
            settle()
            assert factory.latest(a).cancelled.is_set() and not factory.latest(a).exited.is_set()
        finally:
            release_and_stop(runner, factory)

    def test_timeout_and_ctx_deadline_are_measured_on_the_clock(self, clock):
        """[MATCH] A timeout (or a ctx deadline) passing while stale workers exit makes apply_tasks raise
        DeadlineExceeded."""
        a, b = Key("a"), Key("b")
        factory = Factory(stubborn=[a, b])
        runner = Runner(factory, clock=clock)
        try:
            runner.apply_tasks([a, b])
            settle()
            _, by_timeout = apply_in_background(runner, [b], timeout=5)
            assert clock.wait_for_sleepers(1)
            clock.advance(4.9)
            assert not by_timeout.ready()
            clock.advance(0.1)
            with pytest.raises(DeadlineExceeded):
                by_timeout.get(timeout=5)
            _, by_ctx = apply_in_background(runner, [], ctx=with_timeout(None, 3, clock=clock))
            settle()
            assert not by_ctx.ready()
            clock.advance(3)
            with pytest.raises(DeadlineExceeded):
                by_ctx.get(timeout=5)
        finally:
            release_and_stop(runner, factory)

    def test_apply_after_stop_is_closed(self, runner, factory):
        """[MATCH] apply_tasks after stop() raises RunnerClosedError ("Runner is closed"), starts nothing."""
        runner.stop()
        with pytest.raises(RunnerClosedError, match="Runner is closed"):
            runner.apply_tasks([Key("a")])
        assert factory.calls == []
        assert runner.closed

    def test_stop_cancels_all_and_waits(self, clock):
        """[MATCH] stop() cancels every worker ctx and blocks until every run returned; a second call is
        harmless."""
        tasks = [Key("a"), Key("b"), Key("c")]
        factory = Factory(stubborn=tasks)
        runner = Runner(factory, clock=clock)
        runner.apply_tasks(tasks)
        settle()
        stopper = gevent.spawn(runner.stop)
        settle()
        assert all(w.cancelled.is_set() for w in factory.made)
        assert not stopper.ready()
        for worker in factory.made:
            worker.release.set()
        stopper.get(timeout=5)
        assert all(w.exited.is_set() for w in factory.made)
        runner.stop()
        assert not _greenlets.alive()
        assert runner.tasks() == tasks

    def test_tasks_and_workers_include_exited(self, runner, factory):
        """[MATCH] tasks()/workers() list the tracked set, including workers whose run already returned."""
        a, b = Key("a"), Key("b")
        runner.apply_tasks([a, b])
        settle()
        factory.latest(a).ctx.cancel()  # a's run returns by itself
        factory.latest(a).exited.wait(timeout=5)
        settle()
        assert runner.tasks() == [a, b]
        assert runner.workers() == [factory.latest(a), factory.latest(b)]
        assert runner.status()[0].state is WorkerState.EXITED

    def test_exited_worker_not_restarted_by_default(self, runner, factory):
        """[MATCH] Re-applying a task does not restart its exited worker; removing then re-adding it does."""
        a = Key("a")
        runner.apply_tasks([a])
        settle()
        factory.latest(a).ctx.cancel()
        settle()
        runner.apply_tasks([a])
        assert len(factory.calls) == 1
        runner.apply_tasks([])
        runner.apply_tasks([a])
        settle()
        assert len(factory.calls) == 2
        assert running_workers(runner) == [factory.latest(a)]

    def test_restart_exited_option(self, clock):
        """[FIX] With restart_exited=True an exited or failed worker is restarted by the next apply listing
        its task."""
        a, b = Key("a"), Key("b")
        factory = Factory()
        runner = Runner(factory, restart_exited=True, clock=clock)
        try:
            runner.apply_tasks([a, b])
            settle()
            first = factory.latest(a)
            first.ctx.cancel()
            settle()
            runner.apply_tasks([a, b])
            settle()
            assert factory.calls == [a, b, a]
            assert factory.latest(a) is not first and factory.latest(a).started.is_set()
            assert runner.tasks()[0] is a
            assert factory.latest(b).runs == 1
        finally:
            release_and_stop(runner, factory)

    def test_concurrent_apply_never_duplicates(self, clock):
        """[FIX] Concurrent apply_tasks calls are serialised: one worker per task even when new_worker
        switches."""
        gate = Event()
        inner = Factory()

        def slow_factory(task):
            gate.wait()  # a switch inside new_worker, where Go's Has/Add race lives
            return inner(task)

        runner = Runner(slow_factory, clock=clock)
        try:
            a = Key("a")
            _, r1 = apply_in_background(runner, [a])
            _, r2 = apply_in_background(runner, [a, Key("b")])
            settle()
            gate.set()
            r1.get(timeout=5)
            r2.get(timeout=5)
            settle()
            assert inner.calls == [a, Key("b")]
            assert len(running_workers(runner)) == 2
            assert len(_greenlets.alive()) == 2
        finally:
            release_and_stop(runner, inner)

    def test_readding_exiting_task_never_overlaps(self, clock):
        """[FIX] After a cancelled apply, re-adding a task whose old worker is still exiting waits for it:
        never two copies."""
        a = Key("a")
        book = Book()
        factory = Factory(stubborn=[a], book=book)
        runner = Runner(factory, clock=clock)
        try:
            runner.apply_tasks([a])
            settle()
            old = factory.latest(a)
            ctx = with_cancel(clock=clock)
            ctx.cancel()
            with pytest.raises(Canceled):
                runner.apply_tasks([], ctx=ctx)
            assert [s.state for s in runner.status()] == [WorkerState.STOPPING]
            runner.apply_tasks([a])
            settle()
            new = factory.latest(a)
            assert new is not old and not new.started.is_set()
            assert [(s.worker, s.state) for s in runner.status()] == [
                (new, WorkerState.STARTING),
                (old, WorkerState.STOPPING),
            ]
            factory.stubborn.clear()
            old.release.set()
            new.started.wait(timeout=5)
            settle()
            assert book.peak[a] == 1
            assert [(s.worker, s.state) for s in runner.status()] == [(new, WorkerState.RUNNING)]
        finally:
            release_and_stop(runner, factory)

    def test_worker_exception_is_caught_logged_and_reported(self, runner, factory, caplog):
        """[EXT] An exception from run is caught, logged once and shown in status(); the runner and other
        workers go on."""
        boom = ValueError("boom")

        def bad(ctx):
            raise boom

        factory_calls = []

        def new_worker(task):
            factory_calls.append(task)
            return bad if task.name == "bad" else factory(task)

        r = Runner(new_worker, clock=runner._clock)
        try:
            with caplog.at_level(logging.ERROR, logger="greenworks.runner"):
                r.apply_tasks([Key("bad"), Key("good")])
                settle()
            failures = [rec for rec in caplog.records if rec.exc_info]
            assert len(failures) == 1 and failures[0].exc_info[1] is boom
            bad_status, good_status = r.status()
            assert bad_status.state is WorkerState.FAILED and bad_status.error is boom
            assert bad_status.exited_at is not None
            assert good_status.state is WorkerState.RUNNING
            r.apply_tasks([Key("good"), Key("more")])
            settle()
            assert len(running_workers(r)) == 2
        finally:
            r.stop()

    def test_new_worker_exception_is_reported(self, clock, caplog):
        """[EXT] An exception from new_worker marks that task FAILED in status(), logged once; other tasks
        still start."""
        inner = Factory()

        def new_worker(task):
            if task.name == "bad":
                raise KeyError("no such endpoint")
            return inner(task)

        runner = Runner(new_worker, clock=clock)
        try:
            with caplog.at_level(logging.ERROR, logger="greenworks.runner"):
                runner.apply_tasks([Key("bad"), Key("good")])
            assert len([rec for rec in caplog.records if rec.exc_info]) == 1
            bad_status = runner.status()[0]
            assert bad_status.state is WorkerState.FAILED and isinstance(bad_status.error, KeyError)
            assert runner.workers() == [inner.latest(Key("good"))]
        finally:
            release_and_stop(runner, inner)


class CountingTask:
    """A task counting how often its __hash__ and __eq__ run."""

    hashes = 0
    eqs = 0

    def __init__(self, ident):
        self.ident = ident

    def __hash__(self):
        CountingTask.hashes += 1
        return hash(self.ident)

    def __eq__(self, other):
        CountingTask.eqs += 1
        return isinstance(other, CountingTask) and self.ident == other.ident


class TestCost:
    def test_reapplying_the_same_set_does_no_per_task_work_beyond_one_hash(self, runner, factory):
        """Re-applying an unchanged set hashes and compares each listed task at most once, starts nothing."""
        runner.apply_tasks([CountingTask(i) for i in range(200)])
        CountingTask.hashes = CountingTask.eqs = 0
        runner.apply_tasks([CountingTask(i) for i in range(200)])
        assert CountingTask.hashes == 200
        assert CountingTask.eqs <= 200
        assert len(factory.calls) == 200

    def test_changing_a_few_tasks_costs_the_change_not_the_total(self, runner, factory):
        """Swapping 5 of 200 tasks hashes and compares each listed task once plus a constant per change."""
        runner.apply_tasks([CountingTask(i) for i in range(200)])
        CountingTask.hashes = CountingTask.eqs = 0
        runner.apply_tasks([CountingTask(i) for i in range(5, 205)])
        settle()
        assert len(factory.calls) == 205
        assert CountingTask.hashes <= 200 + 10 * 6
        assert CountingTask.eqs <= 200


class TestStopRacingApply:
    def test_stop_during_apply_sees_the_workers_it_starts(self, clock):
        """stop() during an apply_tasks blocked in new_worker waits for that apply and leaves no worker."""
        gate = Event()
        inner = Factory()

        def slow_factory(task):
            gate.wait()
            return inner(task)

        runner = Runner(slow_factory, clock=clock)
        _, applied = apply_in_background(runner, [Key("a"), Key("b")])
        settle()
        stopper = gevent.spawn(runner.stop)
        settle()
        assert runner.closed and not stopper.ready()
        gate.set()
        stopper.get(timeout=5)
        applied.get(timeout=5)
        assert [w.runs for w in inner.made] == [1, 1]
        assert all(w.ctx.err is not None and w.exited.is_set() for w in inner.made)
        assert not _greenlets.alive()
        with pytest.raises(RunnerClosedError):
            runner.apply_tasks([Key("c")])

    def test_stop_while_apply_waits_for_a_stale_worker(self, clock):
        """stop() and a waiting apply_tasks both return once the stale worker exits."""
        a = Key("a")
        factory = Factory(stubborn=[a])
        runner = Runner(factory, clock=clock)
        runner.apply_tasks([a, Key("b")])
        settle()
        _, applied = apply_in_background(runner, [Key("b")])
        settle()
        stopper = gevent.spawn(runner.stop)
        settle()
        assert not applied.ready() and not stopper.ready()
        factory.latest(a).release.set()
        stopper.get(timeout=5)
        applied.get(timeout=5)
        assert not _greenlets.alive()


class TestWorkersAndCallables:
    def test_plain_callable_worker(self, clock):
        """new_worker may return a plain callable f(ctx); it runs until its ctx is cancelled."""
        seen = AsyncResult()

        def new_worker(task):
            def run(ctx):
                seen.set(task)
                ctx.wait()

            return run

        runner = Runner(new_worker, clock=clock)
        try:
            runner.apply_tasks([Key("a")])
            assert seen.get(timeout=5) == Key("a")
        finally:
            runner.stop()

    def test_bad_new_worker_result_is_reported(self, clock):
        """A new_worker result that is neither an IWorker nor callable is a FAILED task with an
        InvalidArgument."""
        runner = Runner(lambda task: 42, clock=clock)
        try:
            runner.apply_tasks([Key("a")])
            status = runner.status()[0]
            assert status.state is WorkerState.FAILED
            assert isinstance(status.error, InvalidArgument) and "42" in str(status.error)
        finally:
            runner.stop()

    def test_reentrant_apply_from_new_worker_is_an_error(self, clock):
        """Calling apply_tasks from inside new_worker fails that task instead of deadlocking."""
        holder = {}

        def new_worker(task):
            holder["runner"].apply_tasks([])
            return Worker(task)

        runner = holder["runner"] = Runner(new_worker, clock=clock)
        try:
            runner.apply_tasks([Key("a")])
            assert isinstance(runner.status()[0].error, RuntimeError)
        finally:
            runner.stop()

    def test_greenlets_are_named(self, clock, factory):
        """Each worker greenlet is named greenworks.<runner name>[<task repr>]."""
        runner = Runner(factory, name="health", clock=clock)
        try:
            runner.apply_tasks([Key("a")])
            assert [g.name for g in _greenlets.alive()] == ["greenworks.health[Key(name='a')]"]
        finally:
            release_and_stop(runner, factory)


class TestStopTimeout:
    def test_apply_kills_stale_worker_after_stop_timeout(self, clock):
        """A stale worker ignoring its cancelled ctx for stop_timeout is killed and apply_tasks returns."""
        a = Key("a")
        factory = Factory(stubborn=[a])
        runner = Runner(factory, stop_timeout=2.0, clock=clock)
        try:
            runner.apply_tasks([a])
            settle()
            _, result = apply_in_background(runner, [])
            settle()
            clock.advance(1.9)
            assert not result.ready()
            clock.advance(0.1)
            result.get(timeout=5)
            assert factory.latest(a).exited.is_set() and not factory.latest(a).release.is_set()
            assert runner.status() == []
        finally:
            release_and_stop(runner, factory)

    def test_stop_kills_after_stop_timeout(self, clock):
        """stop() kills workers that ignore cancellation for stop_timeout and reports them KILLED."""
        a = Key("a")
        factory = Factory(stubborn=[a])
        runner = Runner(factory, stop_timeout=5, clock=clock)
        runner.apply_tasks([a])
        settle()
        stopper = gevent.spawn(runner.stop)
        settle()
        clock.advance(4)
        assert not stopper.ready()
        clock.advance(1)
        stopper.get(timeout=5)
        assert runner.status()[0].state is WorkerState.KILLED
        assert not _greenlets.alive()

    def test_kill_timer_still_fires_after_cancelled_apply(self, clock):
        """After an apply that stopped waiting, the stale worker is still killed at stop_timeout and
        untracked."""
        a = Key("a")
        factory = Factory(stubborn=[a])
        runner = Runner(factory, stop_timeout=3, clock=clock)
        try:
            runner.apply_tasks([a])
            settle()
            with pytest.raises(DeadlineExceeded):
                runner.apply_tasks([], timeout=0)
            assert [s.state for s in runner.status()] == [WorkerState.STOPPING]
            clock.advance(3)
            assert runner.status() == []
            assert not _greenlets.alive()
        finally:
            release_and_stop(runner, factory)

    def test_default_stop_timeout_kills_a_stubborn_worker_after_ten_seconds(self, clock):
        """[issue 14 item 4] By default (stop_timeout=10 s) stop() kills a stubborn worker, returns False."""
        a = Key("a")
        factory = Factory(stubborn=[a])
        runner = Runner(factory, clock=clock)
        assert runner.stop_timeout == 10.0
        runner.apply_tasks([a])
        settle()
        stopper = gevent.spawn(runner.stop)
        settle()
        clock.advance(9.9)
        assert not stopper.ready()
        clock.advance(0.1)
        assert stopper.get(timeout=5) is False
        assert runner.status()[0].state is WorkerState.KILLED

    def test_without_stop_timeout_nothing_is_killed(self, clock):
        """With stop_timeout=None a stubborn worker is never killed: stop() waits for it."""
        a = Key("a")
        factory = Factory(stubborn=[a])
        runner = Runner(factory, stop_timeout=None, clock=clock)
        runner.apply_tasks([a])
        settle()
        stopper = gevent.spawn(runner.stop)
        settle()
        clock.advance(3600)
        assert not stopper.ready() and not factory.latest(a).exited.is_set()
        factory.latest(a).release.set()
        stopper.get(timeout=5)
        assert runner.status()[0].state is WorkerState.EXITED


class TestStatus:
    def test_status_records_times_from_the_clock(self, runner, factory, clock):
        """status() gives frozen snapshots with started_at/exited_at from the runner's clock."""
        a = Key("a")
        runner.apply_tasks([a])
        settle()
        status = runner.status()[0]
        assert isinstance(status, WorkerStatus)
        assert status.started_at == clock.now() and status.exited_at is None and status.alive
        with pytest.raises(dataclasses.FrozenInstanceError):
            status.state = WorkerState.EXITED
        clock.advance(60)
        runner.apply_tasks([])
        runner.apply_tasks([a])
        settle()
        assert runner.status()[0].started_at == clock.now()

    def test_snapshot_is_json_serialisable(self, factory, clock):
        """snapshot() returns plain data naming the component, runner and each worker's state."""
        runner = Runner(factory, name="health", clock=clock)
        try:
            runner.apply_tasks([Key("a"), Key("b")])
            settle()
            factory.latest(Key("b")).ctx.cancel()
            settle()
            data = json.loads(json.dumps(runner.snapshot()))
            assert data["component"] == "runner" and data["name"] == "health"
            assert data["workers"] == 1 and data["closed"] is False
            assert [t["state"] for t in data["tasks"]] == ["running", "exited"]
            assert data["tasks"][0]["task"] == "Key(name='a')"
            assert data["tasks"][0]["started_at"] == clock.now().isoformat()
        finally:
            release_and_stop(runner, factory)


class TestBadInput:
    @pytest.mark.parametrize(
        "kwargs, argument",
        [({"ctx": "nope"}, "ctx"), ({"timeout": -1}, "timeout"), ({"timeout": "1"}, "timeout")],
    )
    def test_bad_apply_arguments(self, runner, factory, kwargs, argument):
        """A bad ctx or timeout raises InvalidArgument naming it, and nothing is started."""
        with pytest.raises(InvalidArgument, match=argument):
            runner.apply_tasks([Key("a")], **kwargs)
        assert factory.calls == []

    def test_unhashable_task_is_named(self, runner, factory):
        """An unhashable task raises InvalidArgument naming the task, and nothing changes."""
        runner.apply_tasks([Key("a")])
        with pytest.raises(InvalidArgument, match=r"\['x'\]"):
            runner.apply_tasks(iter([Key("b"), ["x"]]))
        assert runner.tasks() == [Key("a")] and factory.calls == [Key("a")]

    def test_string_is_not_a_task_list(self, runner):
        """A bare string is rejected instead of becoming one task per character."""
        with pytest.raises(InvalidArgument, match="tasks"):
            runner.apply_tasks("abc")


class RunnerMachine(RuleBasedStateMachine):
    """Random task sets (with hash collisions) keep exactly the desired set running, one worker each."""

    def __init__(self):
        super().__init__()
        self.book = Book()
        self.factory = Factory(book=self.book)
        self.runner = Runner(self.factory)
        self.desired = set()
        self.expected_calls = 0

    @initialize()
    def start(self):
        Colliding.eq_calls = []

    def _apply(self, idents, ctx=None):
        tasks = [Colliding(i, i % 3) for i in idents]
        added = {t for t in tasks if t not in self.desired}
        self.expected_calls += len(added)
        if ctx is None:
            self.runner.apply_tasks(tasks)
        else:
            with pytest.raises(Canceled):
                self.runner.apply_tasks(tasks, ctx=ctx)
        self.desired = set(tasks)

    @rule(idents=st.lists(st.integers(0, 7), max_size=10))
    def apply(self, idents):
        self._apply(idents)

    @rule(idents=st.lists(st.integers(0, 7), max_size=10))
    def apply_cancelled(self, idents):
        ctx = with_cancel()
        ctx.cancel()
        self._apply(idents, ctx)

    @rule(
        first=st.lists(st.integers(0, 7), max_size=10),
        second=st.lists(st.integers(0, 7), max_size=10),
    )
    def cancelled_apply_then_apply(self, first, second):
        """Re-add tasks while the workers removed by a cancelled apply are still exiting."""
        ctx = with_cancel()
        ctx.cancel()
        self._apply(first, ctx)
        self._apply(second)

    @invariant()
    def exactly_the_desired_set_runs(self):
        settle()
        assert set(self.runner.tasks()) == self.desired
        assert len(self.runner.tasks()) == len(self.desired)
        assert all(self.book.peak.get(t, 0) <= 1 for t in self.book.peak)
        assert set(self.book.live) == self.desired
        assert all(count == 1 for count in self.book.live.values())
        assert len(_greenlets.alive()) == len(self.desired)
        assert len(self.factory.calls) == self.expected_calls
        assert all(left == right for left, right in Colliding.eq_calls)

    def teardown(self):
        self.runner.stop()
        assert not _greenlets.alive()


TestRunnerStateMachine = RunnerMachine.TestCase
TestRunnerStateMachine.settings = settings(max_examples=30, stateful_step_count=15, deadline=None)
