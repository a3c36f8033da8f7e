"""Tests for greenworks.taskmanager: the seed 002 checklist, Go's own scenarios, supervision."""

import json
import logging
import random

import gevent
import pytest
from gevent.event import AsyncResult, Event
from gevent.queue import Queue
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from greenworks import _greenlets
from greenworks.exceptions import (
    Canceled,
    DeadlineExceeded,
    InvalidArgument,
    ManagerStoppedError,
    StopTimeoutError,
    TaskAlreadyExistsError,
)
from greenworks.interfaces import (
    IBackoff,
    IManagedTask,
    IRestartableTask,
    ITaskManager,
    ITaskWithProgress,
)
from greenworks.taskmanager import (
    FailedTask,
    Scheduled,
    TaskManager,
    TaskStatus,
    WorkerInfo,
    WorkerStatus,
    _FuncTask,
)
from greenworks.testing import settle

IDLE = WorkerInfo("idle", WorkerStatus.WAITING)


@implementer(IManagedTask)
class ControlledTask:
    """A task whose every run blocks until the test calls ``finish()`` (or ctx is done)."""

    def __init__(self, name):
        self._name = name
        self.runs = 0
        self.started = Queue()
        self.contexts = []
        self._result = AsyncResult()

    def name(self):
        return self._name

    def finish(self, error=None):
        result, self._result = self._result, AsyncResult()
        result.set(error)

    def execute(self, ctx):
        self.runs += 1
        self.contexts.append(ctx)
        result = self._result
        self.started.put(self.runs)
        gevent.wait([result, ctx.done], count=1)
        if result.ready():
            error = result.get()
            if error is not None:
                raise error
            return
        ctx.raise_if_done()


@implementer(IRestartableTask)
class RestartableTask(ControlledTask):
    """A ControlledTask whose ``restart`` answers from a list (False once it is empty)."""

    def __init__(self, name, answers=()):
        super().__init__(name)
        self.answers = list(answers)
        self.restart_calls = []

    def restart(self, ctx, error):
        self.restart_calls.append((ctx, error))
        return self.answers.pop(0) if self.answers else False


@implementer(IRestartableTask)
class CrashingTask:
    """Raises on every run; always asks to be restarted."""

    def __init__(self, name):
        self._name = name
        self.runs = 0

    def name(self):
        return self._name

    def execute(self, ctx):
        self.runs += 1
        raise RuntimeError("crash %d" % self.runs)

    def restart(self, ctx, error):
        return True


@implementer(ITaskWithProgress)
class ProgressTask(ControlledTask):
    """A ControlledTask with settable progress and description (or ones that raise)."""

    def __init__(self, name, value=0.0, text="", broken=False):
        super().__init__(name)
        self.value = value
        self.text = text
        self.broken = broken

    def progress(self):
        if self.broken:
            raise RuntimeError("no progress")
        return self.value

    def description(self):
        if self.broken:
            raise RuntimeError("no description")
        return self.text


@implementer(IBackoff)
class RecordingBackoff:
    """An IBackoff waiting ``step * attempt`` seconds and recording the attempts asked for."""

    def __init__(self, step):
        self.step = step
        self.attempts = []

    def duration(self, attempt):
        self.attempts.append(attempt)
        return self.step * attempt


@pytest.fixture
def managers():
    """Build TaskManagers that are all stopped after the test."""
    created = []

    def make(*args, **kwargs):
        manager = TaskManager(*args, **kwargs)
        created.append(manager)
        return manager

    yield make
    for manager in created:
        manager.stop()


def start(manager, task):
    """Submit *task* and wait until it is running."""
    sched = manager.go(task)
    task.started.get()
    assert sched.is_set()
    return sched


class TestInterfaces:
    def test_taskmanager_class_provides_itaskmanager(self):
        """TaskManager implements every method of ITaskManager."""
        assert verifyClass(ITaskManager, TaskManager)

    def test_taskmanager_instance_provides_itaskmanager(self, managers, clock):
        """A TaskManager instance has ITaskManager's methods and attributes."""
        assert verifyObject(ITaskManager, managers(1, 2, 1.0, clock=clock))

    def test_go_func_wrapper_provides_imanagedtask(self):
        """The task go_func builds is an IManagedTask."""
        assert verifyClass(IManagedTask, _FuncTask)
        assert verifyObject(IManagedTask, _FuncTask("k", lambda ctx: None))

    def test_test_tasks_provide_their_interfaces(self):
        """The test doubles conform to the task interfaces they stand for."""
        assert verifyObject(IRestartableTask, RestartableTask("r"))
        assert verifyObject(ITaskWithProgress, ProgressTask("p"))
        assert verifyObject(IBackoff, RecordingBackoff(1.0))


class TestConstruction:
    @pytest.mark.parametrize(
        ("args", "kwargs", "named"),
        [
            ((-1, 3, 1.0), {}, "min_workers"),
            (("1", 3, 1.0), {}, "min_workers"),
            ((1, 0, 1.0), {}, "max_workers"),
            ((3, 2, 1.0), {}, "max_workers"),
            ((0, 0, 1.0), {}, "max_workers"),
            ((1, 3, "1s"), {}, "timeout"),
            ((1, 3, 1.0, "log"), {}, "logger"),
            ((1, 3, 1.0), {"schedule_delay": -0.1}, "schedule_delay"),
            ((1, 3, 1.0), {"restart_backoff": 2.0}, "restart_backoff"),
            ((1, 3, 1.0), {"max_restarts": -1}, "max_restarts"),
            ((1, 3, 1.0), {"restart_period": 0}, "restart_period"),
            ((1, 3, 1.0), {"clock": object()}, "clock"),
            ((1, 3, 1.0), {"name": ""}, "name"),
        ],
    )
    def test_bad_arguments_are_rejected_naming_them(self, args, kwargs, named):
        """A bad constructor argument raises InvalidArgument naming the argument, and starts nothing."""
        with pytest.raises(InvalidArgument, match=named):
            TaskManager(*args, **kwargs)
        assert _greenlets.alive() == []

    def test_worker_greenlets_are_named_after_the_manager(self, managers, clock):
        """Worker greenlets are named greenworks.<name>[<id>]."""
        managers(2, 3, 1.0, clock=clock, name="jobs")
        names = sorted(g.name for g in _greenlets.alive())
        assert names == ["greenworks.jobs[1]", "greenworks.jobs[2]"]

    def test_default_greenlet_name(self, managers, clock):
        """Without name=, worker greenlets are named greenworks.taskmanager[<id>]."""
        managers(1, 3, 1.0, clock=clock)
        assert [g.name for g in _greenlets.alive()] == ["greenworks.taskmanager[1]"]

    def test_go_rejects_a_non_task(self, managers, clock):
        """go() with an object lacking name()/execute(ctx) raises InvalidArgument and records nothing."""
        manager = managers(1, 3, 1.0, clock=clock)
        with pytest.raises(InvalidArgument, match="task"):
            manager.go(object())
        assert manager.task_status() == {}

    def test_go_func_rejects_bad_key_and_fn(self, managers, clock):
        """go_func() names a non-str key or a non-callable fn in its error."""
        manager = managers(1, 3, 1.0, clock=clock)
        with pytest.raises(InvalidArgument, match="key"):
            manager.go_func(3, lambda ctx: None)
        with pytest.raises(InvalidArgument, match="fn"):
            manager.go_func("k", None)


class TestGoScenarios:
    """Go's own manager_test.go scenarios, all with New(1, 3, time.Second)."""

    def test_initial_state(self, managers, clock):
        """[MATCH] New(1,3,...): status() has exactly worker 1, "idle"/"waiting"."""
        manager = managers(1, 3, 1.0, clock=clock)
        assert manager.status() == {1: IDLE}
        assert manager.status()[1].status == "waiting"

    def test_add_tasks(self, managers, clock):
        """Go "add tasks": t1 runs on 1 worker, t2 grows the pool to 2, finishing t1 keeps 2 workers."""
        manager = managers(1, 3, 1.0, clock=clock)
        t1, t2 = ControlledTask("t1"), ControlledTask("t2")
        start(manager, t1)
        assert manager.status() == {1: WorkerInfo("t1", WorkerStatus.RUNNING)}
        manager.go(t2)
        clock.advance(0.5)
        t2.started.get()
        assert manager.status() == {
            1: WorkerInfo("t1", WorkerStatus.RUNNING),
            2: WorkerInfo("t2", WorkerStatus.RUNNING),
        }
        t1.finish()
        settle()
        assert manager.status() == {1: IDLE, 2: WorkerInfo("t2", WorkerStatus.RUNNING)}
        t2.finish()
        settle()
        assert manager.status() == {1: IDLE, 2: IDLE}
        assert manager.task_status() == {}

    def test_add_more_than_capacity(self, managers, clock):
        """[MATCH] With max busy workers a further task stays "not assigned" until one frees up, then runs."""
        manager = managers(1, 3, 1.0, clock=clock)
        tasks = [ControlledTask("t%d" % i) for i in range(1, 5)]
        start(manager, tasks[0])
        for task in tasks[1:3]:
            manager.go(task)
        clock.advance(0.5)
        clock.advance(0.5)
        for task in tasks[1:3]:
            task.started.get()
        sched4 = manager.go(tasks[3])
        clock.advance(5)
        assert len(manager.status()) == 3
        assert manager.task_status()["t4"].status == WorkerStatus.NOT_ASSIGNED
        assert manager.task_status()["t4"].worker == 0
        assert not sched4.is_set()
        tasks[0].finish()
        tasks[3].started.get()
        assert sched4.is_set() and sched4.assigned is True and sched4.worker == 1
        assert manager.task_status()["t4"].status == WorkerStatus.RUNNING

    def test_fail_duplicate(self, managers, clock):
        """[MATCH] go() naming a running or pending task raises "task with same name already exists"."""
        manager = managers(1, 1, 1.0, clock=clock)
        start(manager, ControlledTask("t1"))
        with pytest.raises(TaskAlreadyExistsError, match=r"^task with same name already exists$"):
            manager.go(ControlledTask("t1"))
        manager.go(ControlledTask("t2"))
        with pytest.raises(TaskAlreadyExistsError):
            manager.go_func("t2", lambda ctx: None)
        assert isinstance(TaskAlreadyExistsError(), KeyError)

    def test_restart_on_error(self, managers, clock):
        """[MATCH] A failed RestartableTask whose restart() is True runs again with restarts == 1."""
        manager = managers(1, 3, 1.0, clock=clock)
        task = RestartableTask("t1", answers=[True])
        start(manager, task)
        error = RuntimeError("boom")
        task.finish(error)
        assert task.started.get() == 2
        status = manager.task_status()["t1"]
        assert (status.status, status.restarts, status.worker) == (WorkerStatus.RUNNING, 1, 1)
        assert status.last_error is error
        assert task.restart_calls == [(task.contexts[0], error)]

    def test_restart_on_panic(self, managers, clock):
        """[MATCH] An exception raised in execute is the task's error ("Panic"): restarted, restarts == 1."""
        manager = managers(1, 3, 1.0, clock=clock)
        task = RestartableTask("t1", answers=[True])
        start(manager, task)
        task.finish(ZeroDivisionError("panic"))
        task.started.get()
        assert manager.task_status()["t1"].restarts == 1
        assert isinstance(task.restart_calls[0][1], ZeroDivisionError)

    def test_with_progress(self, managers, clock):
        """[MATCH] task_status() reports live progress() and description()."""
        manager = managers(1, 3, 1.0, clock=clock)
        task = ProgressTask("t1", 50.0, "half")
        start(manager, task)
        status = manager.task_status()["t1"]
        assert (status.progress, status.description) == (50.0, "half")
        task.value, task.text = 90.0, "nearly"
        status = manager.task_status()["t1"]
        assert (status.progress, status.description) == (90.0, "nearly")

    def test_closure(self, managers, clock):
        """[MATCH] go_func(key, fn) behaves as a task named key: running, then gone, worker idle."""
        manager = managers(1, 3, 1.0, clock=clock)
        running, release = Event(), Event()
        seen = []

        def fn(ctx):
            seen.append(ctx)
            running.set()
            release.wait()

        sched = manager.go_func("closure", fn)
        running.wait()
        assert sched.is_set()
        assert manager.status() == {1: WorkerInfo("closure", WorkerStatus.RUNNING)}
        assert manager.task_status()["closure"].name == "closure"
        with pytest.raises(TaskAlreadyExistsError):
            manager.go_func("closure", fn)
        release.set()
        settle()
        assert manager.status() == {1: IDLE}
        assert manager.task_status() == {}
        assert seen[0].err is None

    def test_timeout(self, managers, clock):
        """[MATCH] Workers idle longer than timeout retire down to min: 3 -> 1 after 2 s; new tasks run."""
        manager = managers(1, 3, 1.0, clock=clock)
        tasks = [ControlledTask("t%d" % i) for i in range(3)]
        for task in tasks:
            manager.go(task)
        clock.advance(1.0)
        for task in tasks:
            task.started.get()
        assert len(manager.status()) == 3
        for task in tasks:
            task.finish()
        settle()
        assert manager.status() == {1: IDLE, 2: IDLE, 3: IDLE}
        clock.advance(2.0)
        assert list(manager.status().values()) == [IDLE]
        more = [ControlledTask("m%d" % i) for i in range(2)]
        for task in more:
            manager.go(task)
        clock.advance(0.5)
        for task in more:
            task.started.get()
        assert len(manager.status()) == 2

    def test_stop(self, managers, clock):
        """[MATCH] stop() cancels the ctx of every running execute, waits for the workers, returns None."""
        manager = managers(1, 3, 1.0, clock=clock)
        running = [ControlledTask("r%d" % i) for i in range(3)]
        for task in running:
            manager.go(task)
        clock.advance(1.0)
        for task in running:
            task.started.get()
        pending = [manager.go(ControlledTask("p%d" % i)) for i in range(2)]
        assert manager.stop(timeout=5) is True
        assert manager.status() == {}
        for task in running:
            assert isinstance(task.contexts[0].err, Canceled)
        assert [s.assigned for s in pending] == [False, False]
        assert all(s.is_set() for s in pending)
        assert _greenlets.alive() == []


class TestChecklist:
    """The remaining 002 checklist lines of SEEDS_SPEC.md section 7."""

    def test_worker_ids_only_increase(self, managers, clock):
        """[MATCH] Worker ids start at 1, only increase, and are never reused after a retirement."""
        manager = managers(1, 2, 1.0, clock=clock)
        t1, t2 = ControlledTask("a"), ControlledTask("b")
        start(manager, t1)
        manager.go(t2)
        clock.advance(0.5)
        t2.started.get()
        assert sorted(manager.status()) == [1, 2]
        t2.finish()
        settle()
        clock.advance(1.0)
        assert sorted(manager.status()) == [1]
        t3 = ControlledTask("c")
        manager.go(t3)
        clock.advance(0.5)
        t3.started.get()
        assert sorted(manager.status()) == [1, 3]

    def test_not_assigned_then_running(self, managers, clock):
        """[MATCH] go() shows "not assigned" with worker 0 until a worker takes it, then "running"."""
        manager = managers(0, 1, 1.0, clock=clock)
        task = ControlledTask("t")
        sched = manager.go(task)
        status = manager.task_status()["t"]
        assert (status.status, status.worker, status.started_at) == (WorkerStatus.NOT_ASSIGNED, 0, None)
        assert not sched.is_set() and sched.assigned is None
        clock.advance(0.5)
        task.started.get()
        status = manager.task_status()["t"]
        assert (status.status, status.worker) == (WorkerStatus.RUNNING, 1)
        assert status.started_at == clock.now()

    def test_sched_is_set_when_handed_over(self, managers, clock):
        """[MATCH] The handle go() returns is a gevent Event set once the task was handed to a worker."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = ControlledTask("t")
        sched = manager.go(task)
        assert isinstance(sched, Event) and isinstance(sched, Scheduled)
        assert sched.is_set() and sched.assigned is True and sched.worker == 1

    def test_scale_up_after_schedule_delay(self, managers, clock):
        """[MATCH] After 0.5 s with no idle worker, ceil((max - running)/2) workers are added, up to max."""
        manager = managers(1, 5, 10.0, clock=clock)
        tasks = [ControlledTask("t%d" % i) for i in range(6)]
        for task in tasks:
            manager.go(task)
        settle()
        assert [t.runs for t in tasks] == [1, 0, 0, 0, 0, 0]
        clock.advance(0.499)
        assert len(manager.status()) == 1
        clock.advance(0.001)
        assert [t.runs for t in tasks] == [1, 1, 1, 1, 1, 0]
        assert sorted(manager.status()) == [1, 2, 3, 4, 5]
        clock.advance(5.0)
        assert len(manager.status()) == 5
        assert manager.task_status()["t5"].status == WorkerStatus.NOT_ASSIGNED

    def test_one_scale_step_adds_half_the_headroom(self, managers, clock):
        """[MATCH] A single waiting task grows the pool by ceil((max - running)/2) once, not to max."""
        manager = managers(1, 6, 10.0, clock=clock)
        start(manager, ControlledTask("a"))
        task = ControlledTask("b")
        manager.go(task)
        clock.advance(0.5)
        task.started.get()
        # ceil((6 - 1) / 2) == 3: one runs b, two stay idle.
        assert list(manager.status().values()).count(IDLE) == 2
        assert len(manager.status()) == 4

    def test_schedule_delay_is_configurable(self, managers, clock):
        """schedule_delay replaces Go's fixed 500 ms before a scale-up."""
        manager = managers(0, 2, 10.0, clock=clock, schedule_delay=2.0)
        task = ControlledTask("t")
        manager.go(task)
        clock.advance(1.9)
        assert manager.status() == {}
        clock.advance(0.1)
        task.started.get()

    def test_duplicate_of_a_restarting_task(self, managers, clock):
        """[MATCH] The name of a task waiting out its restart backoff is still taken (no second instance)."""
        manager = managers(1, 2, 1.0, clock=clock, restart_backoff=RecordingBackoff(1.0))
        task = RestartableTask("t", answers=[True])
        start(manager, task)
        task.finish(RuntimeError("x"))
        settle()
        assert manager.task_status()["t"].status == WorkerStatus.RESTARTED
        with pytest.raises(TaskAlreadyExistsError):
            manager.go(ControlledTask("t"))

    def test_success_frees_the_name(self, managers, clock):
        """[MATCH] A task that completes is removed from task_status() and its name can be submitted again."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = ControlledTask("t")
        start(manager, task)
        task.finish()
        settle()
        assert manager.task_status() == {}
        again = ControlledTask("t")
        start(manager, again)
        assert again.runs == 1

    def test_non_restartable_failure_is_removed(self, managers, clock, caplog):
        """[MATCH] A failed task that is not restartable is removed from task_status() and logged once."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = ControlledTask("t")
        start(manager, task)
        task.finish(ValueError("bad"))
        settle()
        assert manager.task_status() == {}
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info[1].args == ("bad",)

    def test_non_restartable_failure_leaves_a_trace(self, managers, clock):
        """[issue 14 item 8] A failed non-restartable task is in failed_tasks(); its handle has the error."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = ControlledTask("t")
        sched = start(manager, task)
        assert not sched.done()
        error = ValueError("bad")
        task.finish(error)
        assert sched.join(timeout=5) is True
        assert sched.exception is error
        with pytest.raises(ValueError, match="bad"):
            sched.result()
        failed = manager.failed_tasks()["t"]
        assert (failed.name, failed.restarts, failed.last_error) == ("t", 0, error)
        assert manager.snapshot()["failed"][0]["last_error"] == repr(error)

    def test_successful_task_handle_resolves_to_none(self, managers, clock):
        """[issue 14 item 8] go() returns a handle whose result() is None once the task succeeded."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = ControlledTask("t")
        sched = start(manager, task)
        task.finish()
        assert sched.join(timeout=5) is True and sched.result() is None and sched.exception is None
        assert manager.failed_tasks() == {}

    def test_restart_returning_false_is_final(self, managers, clock):
        """[MATCH] A RestartableTask whose restart() returns False is removed, not restarted."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = RestartableTask("t", answers=[False])
        start(manager, task)
        task.finish(RuntimeError("x"))
        settle()
        assert manager.task_status() == {}
        assert task.runs == 1 and len(task.restart_calls) == 1

    def test_canceled_is_never_restarted(self, managers, clock):
        """[MATCH] A failure by Canceled is never restarted; restart() is not even asked."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = RestartableTask("t", answers=[True])
        start(manager, task)
        task.finish(Canceled())
        settle()
        assert task.restart_calls == []
        assert manager.task_status() == {} and task.runs == 1

    def test_deadline_exceeded_is_restarted(self, managers, clock):
        """[MATCH] DeadlineExceeded is eligible for restart (it is not a Canceled)."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = RestartableTask("t", answers=[True])
        start(manager, task)
        task.finish(DeadlineExceeded())
        assert task.started.get() == 2
        assert manager.task_status()["t"].restarts == 1

    def test_progress_errors_read_as_zero_and_empty(self, managers, clock):
        """[MATCH] progress()/description() that raise read as 0.0 and ""."""
        manager = managers(1, 1, 1.0, clock=clock)
        start(manager, ProgressTask("t", 10.0, "x", broken=True))
        status = manager.task_status()["t"]
        assert (status.progress, status.description) == (0.0, "")

    def test_plain_task_has_no_progress(self, managers, clock):
        """A task without progress() shows progress 0.0 and description ""."""
        manager = managers(1, 1, 1.0, clock=clock)
        start(manager, ControlledTask("t"))
        assert manager.task_status()["t"] == TaskStatus(
            "t", 1, WorkerStatus.RUNNING, "", 0.0, 0, None, clock.now()
        )

    def test_min_workers_stay_and_are_restarted_in_place(self, managers, clock):
        """[MATCH] Idle min workers never retire: after many timeouts the same ids are there."""
        manager = managers(2, 4, 1.0, clock=clock)
        clock.advance(10.0)
        assert manager.status() == {1: IDLE, 2: IDLE}

    def test_stop_timeout(self, managers, clock):
        """[MATCH] stop(timeout) raises "failed to stop taskmanager" if a worker outlives it, and kills it."""
        manager = managers(1, 1, 1.0, clock=clock)
        release = Event()
        exited = []

        def stubborn(ctx):
            try:
                release.wait()
            finally:
                exited.append(ctx.err)

        manager.go_func("stubborn", stubborn)
        settle()
        stopper = gevent.spawn(manager.stop, 2.0, raise_on_timeout=True)
        clock.wait_for_sleepers(1)
        clock.advance(1.9)
        assert not stopper.ready()
        clock.advance(0.1)
        with pytest.raises(StopTimeoutError, match=r"^failed to stop taskmanager$"):
            stopper.get()
        assert len(exited) == 1 and isinstance(exited[0], Canceled)
        assert manager.status() == {} and manager.task_status() == {}
        assert _greenlets.alive() == []

    def test_stop_timeout_returns_false_after_killing(self, managers, clock):
        """stop(timeout) kills a task ignoring its ctx, returns False, and its handle holds Canceled."""
        manager = managers(1, 1, 1.0, clock=clock)
        release = Event()
        sched = manager.go_func("stubborn", lambda ctx: release.wait())
        settle()
        stopper = gevent.spawn(manager.stop, 2.0)
        clock.wait_for_sleepers(1)
        clock.advance(2.0)
        assert stopper.get() is False
        assert isinstance(sched.exception, Canceled)
        assert manager.state.value == "stopped" and _greenlets.alive() == []

    def test_worker_status_strings(self):
        """[MATCH] WorkerStatus values are exactly "not assigned", "waiting", "running", "restarted"."""
        assert [s.value for s in WorkerStatus] == ["not assigned", "waiting", "running", "restarted"]
        assert str(WorkerStatus.NOT_ASSIGNED) == "not assigned"
        assert WorkerStatus.RUNNING == "running"

    def test_none_logger_uses_module_logger(self, managers, clock, caplog):
        """[MATCH] logger=None logs to logging.getLogger("greenworks.taskmanager") (no-op logger)."""
        caplog.set_level(logging.INFO, logger="greenworks.taskmanager")
        managers(0, 1, 1.0, clock=clock, name="quiet")
        assert [r.name for r in caplog.records] == ["greenworks.taskmanager"]
        assert "quiet" in caplog.records[0].getMessage()

    def test_custom_logger_is_used(self, managers, clock, caplog):
        """A logger passed in receives the manager's records instead of the module logger."""
        caplog.set_level(logging.INFO)
        managers(0, 1, 1.0, logging.getLogger("my.app"), clock=clock)
        assert [r.name for r in caplog.records] == ["my.app"]

    def test_negative_timeout_is_refused(self):
        """[issue 14 item 9] TaskManager(timeout=-1) raises InvalidArgument naming timeout."""
        with pytest.raises(InvalidArgument, match="timeout"):
            TaskManager(1, 2, -1)

    @pytest.mark.parametrize("timeout", [0, None, float("inf")])
    def test_zero_or_no_timeout_means_never(self, managers, clock, timeout):
        """[FIX] timeout 0, None or inf means no idle timeout: extra workers never retire, no timer churn."""
        manager = managers(1, 3, timeout, clock=clock)
        tasks = [ControlledTask("t%d" % i) for i in range(3)]
        for task in tasks:
            manager.go(task)
        clock.advance(1.0)
        for task in tasks:
            task.started.get()
            task.finish()
        settle()
        assert len(manager.status()) == 3
        assert clock.sleepers == 0
        clock.advance(1000.0)
        assert manager.status() == {1: IDLE, 2: IDLE, 3: IDLE}

    def test_go_after_stop_raises(self, managers, clock):
        """[FIX] go() after stop() raises ManagerStoppedError and strands no "not assigned" name."""
        manager = managers(1, 1, 1.0, clock=clock)
        manager.stop()
        with pytest.raises(ManagerStoppedError):
            manager.go(ControlledTask("t"))
        with pytest.raises(ManagerStoppedError):
            manager.go_func("f", lambda ctx: None)
        assert manager.task_status() == {}
        assert manager.stopped

    def test_worker_survives_a_raising_task(self, managers, clock):
        """[FIX] A worker whose task raised keeps working: the pool stays at min and later tasks run."""
        manager = managers(2, 2, 1.0, clock=clock)
        bad = ControlledTask("bad")
        start(manager, bad)
        bad.finish(RuntimeError("x"))
        settle()
        assert manager.status() == {1: IDLE, 2: IDLE}
        good = ControlledTask("good")
        assert start(manager, good).worker == 2
        assert bad.runs == 1

    def test_escaped_gevent_timeout_is_a_task_error(self, managers, clock):
        """A gevent.Timeout escaping execute() is the task's error; the worker survives it."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = RestartableTask("t", answers=[True])
        start(manager, task)
        task.finish(gevent.Timeout())
        task.started.get()
        assert isinstance(task.restart_calls[0][1], gevent.Timeout)
        assert sorted(manager.status()) == [1]

    def test_simultaneous_timeouts_keep_min(self, managers, clock):
        """[FIX] Five workers timing out at the same instant retire only down to min (2)."""
        manager = managers(2, 5, 1.0, clock=clock, schedule_delay=0.0)
        tasks = [ControlledTask("t%d" % i) for i in range(5)]
        for task in tasks:
            manager.go(task)
        clock.advance(0.0)
        for task in tasks:
            task.started.get()
        assert len(manager.status()) == 5
        for task in tasks:
            task.finish()
        settle()
        clock.advance(1.0)
        assert len(manager.status()) == 2

    def test_concurrent_scale_ups_never_exceed_max(self, managers, clock):
        """[FIX] Many tasks waiting at once, submitted at different times, never grow the pool past max."""
        manager = managers(0, 4, 0.3, clock=clock, schedule_delay=0.1)
        peak = []
        rng = random.Random(7)
        done = []

        def work(ctx, i):
            peak.append(len(manager.status()))
            ctx.sleep(rng.choice((0.05, 0.2, 0.5)))
            done.append(i)

        for i in range(60):
            manager.go_func("t%d" % i, lambda ctx, i=i: work(ctx, i))
            peak.append(len(manager.status()))
            clock.advance(rng.choice((0.0, 0.05, 0.1)))
        while len(done) < 60:
            clock.advance(0.1)
        assert max(peak) == 4
        assert sorted(done) == list(range(60))

    def test_pending_tasks_are_served_fifo(self, managers, clock):
        """[DECIDE] Pending tasks are picked up in the order go() accepted them (FIFO)."""
        manager = managers(1, 1, 1.0, clock=clock)
        order = []
        blocker = ControlledTask("blocker")
        start(manager, blocker)
        for name in ("d", "a", "c", "b"):
            manager.go_func(name, lambda ctx, name=name: order.append(name))
        clock.advance(5.0)
        blocker.finish()
        settle()
        assert order == ["d", "a", "c", "b"]


class TestHandOffRace:
    """[FIX] Handing a task over never races a worker's idle timeout or stop(); nothing is lost."""

    @pytest.mark.slow
    @pytest.mark.timeout(60)
    def test_one_ms_idle_timeout_200_runs_real_clock(self):
        """[FIX] With a 1 ms idle timeout on the real clock, 200 runs of racing hand-offs lose no task."""
        rng = random.Random(2026)
        for _ in range(200):
            manager = TaskManager(1, 4, 0.001, schedule_delay=0.0)
            try:
                ran, scheds = self._race_once(manager, rng)
                assert sorted(ran) == [0, 1, 2, 3, 4]
                assert all(s.assigned for s in scheds)
            finally:
                manager.stop(timeout=5)

    @staticmethod
    def _race_once(manager, rng, count=5):
        ran = []
        all_ran = Event()

        def fn(ctx, i, pause):
            gevent.sleep(pause)
            ran.append(i)
            if len(ran) == count:
                all_ran.set()

        scheds = []
        for i in range(count):
            # Real pauses around the idle timeout: the workload, not synchronisation.
            gevent.sleep(rng.choice((0, 0.0005, 0.001, 0.0015)))
            pause = rng.choice((0, 0.001))
            scheds.append(manager.go_func("t%d" % i, lambda ctx, i=i, pause=pause: fn(ctx, i, pause)))
        assert all_ran.wait(5), "lost: %s" % sorted(set(range(count)) - set(ran))
        return ran, scheds

    @pytest.mark.parametrize("submit_first", [True, False])
    def test_hand_off_at_the_instant_of_the_idle_timeout(self, clock, submit_first):
        """[FIX] A go() at exactly the instant an idle worker times out runs the task once, 200 times over."""
        for _ in range(200):
            manager = TaskManager(0, 1, 0.001, clock=clock, schedule_delay=0.0)
            ran = []
            try:
                if submit_first:
                    clock.call_later(0.001, manager.go_func, "late", ran.append)
                manager.go_func("first", ran.append)
                clock.advance(0.0)
                assert len(ran) == 1 and len(manager.status()) == 1
                if not submit_first:
                    clock.call_later(0.001, manager.go_func, "late", ran.append)
                clock.advance(0.001)
                clock.advance(0.0)
                assert len(ran) == 2
                assert manager.task_status() == {}
            finally:
                manager.stop()

    def test_task_handed_over_as_stop_begins_still_runs(self, managers, clock):
        """[FIX] A task assigned to an idle worker just before stop() runs with a cancelled ctx, not lost."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = ControlledTask("t")
        sched = manager.go(task)
        manager.stop()
        assert sched.assigned is True
        assert task.runs == 1 and isinstance(task.contexts[0].err, Canceled)

    def test_stop_drops_pending_tasks_visibly(self, managers, clock, caplog):
        """stop() sets the handle of a never-assigned task with assigned=False and names it in a warning."""
        manager = managers(1, 1, 1.0, clock=clock)
        start(manager, ControlledTask("busy"))
        sched = manager.go(ControlledTask("waiting"))
        manager.stop()
        assert sched.is_set() and sched.assigned is False
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("waiting" in m and "before 1 task" in m for m in warnings)


class TestRestarts:
    """Erlang/OTP-style supervision beyond Go: backoff and a restart intensity limit."""

    def test_crash_loop_gives_up_after_max_restarts(self, managers, clock, caplog):
        """A task crashing in a loop with max_restarts=3, restart_period=5 stops after 3 restarts, visibly."""
        manager = managers(1, 1, 1.0, clock=clock, max_restarts=3, restart_period=5.0)
        task = CrashingTask("loop")
        manager.go(task)
        settle()
        assert task.runs == 4
        assert manager.task_status() == {}
        failed = manager.failed_tasks()["loop"]
        assert isinstance(failed, FailedTask)
        assert (failed.name, failed.restarts, str(failed.last_error)) == ("loop", 3, "crash 4")
        assert failed.failed_at == clock.now()
        giving_up = [r for r in caplog.records if "giving up" in r.getMessage()]
        assert len(giving_up) == 1 and giving_up[0].levelno == logging.ERROR
        assert manager.snapshot()["failed"][0]["restarts"] == 3
        assert manager.status() == {1: IDLE}

    def test_resubmitting_clears_the_failed_record(self, managers, clock):
        """A given-up name is free again and submitting it drops its failed record."""
        manager = managers(1, 1, 1.0, clock=clock, max_restarts=0)
        manager.go(CrashingTask("x"))
        settle()
        assert list(manager.failed_tasks()) == ["x"]
        task = ControlledTask("x")
        start(manager, task)
        assert manager.failed_tasks() == {}

    def test_restarts_spread_over_the_period_continue(self, managers, clock):
        """Restarts older than restart_period no longer count toward max_restarts."""
        manager = managers(
            1, 1, 1.0, clock=clock, max_restarts=2, restart_period=5.0, restart_backoff=RecordingBackoff(3.0)
        )
        task = CrashingTask("slow")
        manager.go(task)
        settle()
        # Restart 1 waits 3 s, restart 2 waits 6 s: never 3 restarts inside 5 s.
        clock.advance(3.0)
        clock.advance(6.0)
        assert task.runs == 3 and "slow" in manager.task_status()
        assert manager.failed_tasks() == {}

    def test_backoff_spaces_restarts_on_the_clock(self, managers, clock):
        """restart_backoff.duration(n) delays the n-th restart; the task is "restarted" meanwhile."""
        backoff = RecordingBackoff(2.0)
        manager = managers(1, 1, 1.0, clock=clock, restart_backoff=backoff)
        task = RestartableTask("t", answers=[True, True])
        start(manager, task)
        task.finish(RuntimeError("1"))
        settle()
        status = manager.task_status()["t"]
        assert (status.status, status.worker, status.restarts) == (WorkerStatus.RESTARTED, 0, 1)
        clock.advance(1.99)
        assert task.runs == 1
        clock.advance(0.01)
        assert task.started.get() == 2
        task.finish(RuntimeError("2"))
        clock.advance(3.99)
        assert task.runs == 2
        clock.advance(0.01)
        assert task.started.get() == 3
        assert backoff.attempts == [1, 2]

    def test_consecutive_count_resets_after_a_healthy_run(self, managers, clock):
        """A run lasting restart_period or longer resets the backoff attempt to 1."""
        backoff = RecordingBackoff(1.0)
        manager = managers(1, 1, 1.0, clock=clock, restart_backoff=backoff, restart_period=5.0)
        task = RestartableTask("t", answers=[True, True])
        start(manager, task)
        task.finish(RuntimeError("fast"))
        clock.advance(1.0)
        task.started.get()
        clock.advance(5.0)
        task.finish(RuntimeError("after a healthy run"))
        clock.advance(1.0)
        task.started.get()
        assert backoff.attempts == [1, 1]

    def test_restart_that_raises_is_not_restarted(self, managers, clock, caplog):
        """An exception from restart() is logged once and the task is not restarted."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = RestartableTask("t")
        task.restart = lambda ctx, err: 1 / 0
        start(manager, task)
        task.finish(RuntimeError("x"))
        settle()
        assert manager.task_status() == {} and task.runs == 1
        assert sum("restart() of task" in r.getMessage() for r in caplog.records) == 1

    def test_stop_cancels_a_pending_restart(self, managers, clock):
        """stop() during a restart backoff drops the task; it never runs again."""
        manager = managers(1, 1, 1.0, clock=clock, restart_backoff=RecordingBackoff(5.0))
        task = RestartableTask("t", answers=[True])
        start(manager, task)
        task.finish(RuntimeError("x"))
        settle()
        manager.stop()
        clock.advance(10.0)
        assert task.runs == 1 and clock.sleepers == 0

    def test_failure_while_stopping_is_not_restarted(self, managers, clock):
        """A task failing after stop() began is not offered a restart."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = RestartableTask("t", answers=[True])
        start(manager, task)
        manager.stop()
        assert task.restart_calls == [] and task.runs == 1


class TestObservability:
    def test_snapshot_is_json_serialisable(self, managers, clock):
        """snapshot() gives component, name, workers, tasks and failed, and survives json.dumps."""
        manager = managers(1, 2, 1.0, clock=clock, name="tm", max_restarts=0)
        started_at = clock.now().isoformat()
        start(manager, ProgressTask("p", 12.5, "twelve"))
        manager.go(CrashingTask("dead"))
        clock.advance(0.5)
        snap = json.loads(json.dumps(manager.snapshot()))
        assert snap["component"] == "taskmanager" and snap["name"] == "tm"
        assert snap["workers"]["1"] == {"task": "p", "status": "running"}
        assert snap["tasks"][0]["progress"] == 12.5 and snap["tasks"][0]["description"] == "twelve"
        assert snap["tasks"][0]["started_at"] == started_at
        assert snap["failed"][0]["name"] == "dead"
        assert "RuntimeError" in snap["failed"][0]["last_error"]

    def test_killed_worker_is_replaced_and_its_task_reported(self, managers, clock, caplog):
        """A worker greenlet killed from outside is replaced to keep min; its task is reported, not failed."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = RestartableTask("t", answers=[True])
        start(manager, task)
        worker = next(g for g in _greenlets.alive() if g.name == "greenworks.taskmanager[1]")
        worker.kill()
        settle()
        assert manager.status() == {2: IDLE}
        assert manager.task_status() == {} and task.restart_calls == []
        assert any("was killed" in r.getMessage() for r in caplog.records)
        assert not any(r.levelno >= logging.ERROR for r in caplog.records)

    def test_stop_is_idempotent(self, managers, clock):
        """Calling stop() twice is harmless."""
        manager = managers(2, 2, 1.0, clock=clock)
        manager.stop()
        manager.stop()
        assert manager.status() == {}


class TestCrashLoopWithoutLimits:
    def test_unlimited_crash_loop_does_not_starve_the_hub(self, managers, clock):
        """A task failing and restarting at once, with no limit, still yields: others run, stop() works."""
        manager = managers(1, 1, 1.0, clock=clock)
        task = CrashingTask("spin")
        manager.go(task)
        other = gevent.spawn(lambda: task.runs)
        assert other.get() >= 1
        manager.stop()
        assert task.runs >= 2
        assert manager.status() == {}
