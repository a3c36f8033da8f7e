"""task_group: every child waited for, the first failure cancels, errors grouped, none outlives it."""

import sys

import gevent
import pytest
from gevent.event import Event
from zope.interface.verify import verifyClass, verifyObject

import greenworks
from greenworks import _greenlets
from greenworks.context import with_cancel
from greenworks.exceptions import Canceled, DeadlineExceeded, InvalidArgument, TaskGroupError
from greenworks.interfaces import ITaskGroup, ITaskStatus
from greenworks.supervisor import TaskGroup, TaskStatus, task_group
from greenworks.testing import settle

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup, ExceptionGroup
else:  # pragma: no cover - the backport, on 3.10
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup


def forever():
    """A child that ignores its context: only a kill ends it."""
    Event().wait()


def watch(ctx, ended=None):
    """A child that ends when the group's context does."""
    ctx.wait()
    if ended is not None:
        ended.append(ctx.err)


def fail(message="boom"):
    raise ValueError(message)


def alive_children():
    return sorted(g.name for g in _greenlets.alive() if g.name.startswith("greenworks.task_group["))


class TestInterfaces:
    def test_task_group_and_status_provide_their_interfaces(self):
        """TaskGroup provides ITaskGroup and TaskStatus provides ITaskStatus."""
        verifyClass(ITaskGroup, TaskGroup)
        verifyClass(ITaskStatus, TaskStatus)
        verifyObject(ITaskStatus, TaskStatus())
        with task_group() as g:
            verifyObject(ITaskGroup, g)

    def test_reexported_from_the_package(self):
        """greenworks.task_group is the supervisor module's task_group."""
        assert greenworks.task_group is task_group


class TestArguments:
    @pytest.mark.parametrize(
        "kwargs, name",
        [
            ({"ctx": "nope"}, "ctx"),
            ({"timeout": float("nan")}, "timeout"),
            ({"grace": -1}, "grace"),
            ({"clock": object()}, "clock"),
        ],
    )
    def test_bad_arguments_are_refused_by_name(self, kwargs, name):
        """Each bad argument raises InvalidArgument naming it."""
        with pytest.raises(InvalidArgument, match=name):
            task_group(**kwargs)

    def test_spawn_checks_fn_and_name(self):
        """spawn() refuses a non-callable and an empty name."""
        with task_group() as g:
            with pytest.raises(InvalidArgument, match="fn"):
                g.spawn(42)
            with pytest.raises(InvalidArgument, match="name"):
                g.spawn(abs, 1, name=" ")


class TestWaiting:
    def test_exit_waits_for_every_child(self):
        """Leaving the block returns only once each child has finished."""
        gates = [Event(), Event()]
        done = []

        def child(i):
            gates[i].wait()
            done.append(i)

        def opener():
            settle()
            gates[1].set()
            settle()
            gates[0].set()

        helper = gevent.spawn(opener)
        with task_group() as g:
            g.spawn(child, 0)
            g.spawn(child, 1)
        assert done == [1, 0]
        helper.join()

    def test_spawn_calls_fn_with_its_args_only(self):
        """g.spawn(fn, *args) calls fn(*args); the context is g.ctx, passed explicitly."""
        got = []
        with task_group() as g:
            g.spawn(lambda *a: got.append(a), 1, 2)
            g.spawn(lambda ctx: got.append(ctx is g.ctx), g.ctx)
        assert got == [(1, 2), True]

    def test_children_are_named_and_tracked(self):
        """Each child greenlet is named greenworks.task_group[<group>.<n>:<name>] while it runs."""
        seen = []
        with task_group() as g:
            first = g.spawn(lambda: seen.append(alive_children()))
            g.spawn(abs, -1, name="absolute")
        assert first.name.startswith("greenworks.task_group[") and first.name.endswith(".1:<lambda>]")
        assert any(name.endswith(".2:absolute]") for name in seen[0])
        assert alive_children() == []

    def test_children_may_spawn_siblings_while_open(self):
        """A child can spawn into its group; the exit waits for those too."""
        done = []
        with task_group() as g:

            def parent():
                g.spawn(done.append, "sibling")

            g.spawn(parent)
        assert done == ["sibling"]

    def test_a_closed_group_takes_no_children(self):
        """spawn() after the block raises TaskGroupError; so does entering twice."""
        group = task_group()
        with group:
            pass
        with pytest.raises(TaskGroupError):
            group.spawn(abs, 1)
        with pytest.raises(TaskGroupError), group:
            pass


class TestFailures:
    def test_first_failure_cancels_the_group_and_is_raised_grouped(self):
        """A failing child cancels g.ctx; watching siblings end; their Canceled is not an error."""
        ended = []
        with pytest.raises(ExceptionGroup) as info, task_group() as g:
            g.spawn(watch, g.ctx, ended)
            g.spawn(lambda ctx: (ctx.wait(), ctx.raise_if_done()), g.ctx)
            g.spawn(fail)
        assert [type(e) for e in info.value.exceptions] == [ValueError]
        assert len(ended) == 1 and isinstance(ended[0], Canceled)

    def test_siblings_ignoring_the_cancel_are_killed_after_grace(self, clock):
        """A sibling that ignores g.ctx is killed grace seconds after the failure, not before."""
        outcome = []

        def body():
            try:
                with task_group(grace=2.0, clock=clock) as g:
                    g.spawn(forever)
                    g.spawn(fail)
            except ExceptionGroup as eg:
                outcome.append(eg)

        runner = gevent.spawn(body)
        clock.wait_for_sleepers(1)
        clock.advance(1.9)
        assert not outcome and len(alive_children()) == 1
        clock.advance(0.1)
        runner.join(5)
        assert len(outcome) == 1 and alive_children() == []

    def test_every_real_error_is_collected_in_order(self):
        """Two children failing: both errors are in the group, in the order they happened."""
        gate = Event()

        def later():
            gate.wait()
            raise KeyError("second")

        def first():
            gate.set()
            raise ValueError("first")

        with pytest.raises(ExceptionGroup) as info, task_group() as g:
            g.spawn(later)
            g.spawn(first)
        assert [type(e) for e in info.value.exceptions] == [ValueError, KeyError]

    def test_failure_of_the_body_cancels_the_children(self):
        """An exception in the with body cancels g.ctx and is raised in the group."""
        ended = []
        with pytest.raises(ExceptionGroup) as info, task_group() as g:
            g.spawn(watch, g.ctx, ended)
            raise RuntimeError("body broke")
        assert [str(e) for e in info.value.exceptions] == ["body broke"]
        assert len(ended) == 1

    def test_child_failure_while_exit_waits(self):
        """A child failing after the body finished, while __exit__ waits, still fails the group."""
        gate = Event()

        def late():
            gate.wait()
            fail("late")

        helper = gevent.spawn(lambda: (settle(), gate.set()))
        with pytest.raises(ExceptionGroup, match="1 error"), task_group() as g:
            g.spawn(late)
        helper.join()

    def test_escaped_gevent_timeout_makes_a_base_exception_group(self):
        """A gevent.Timeout escaping a child is an error too, grouped in a BaseExceptionGroup."""

        def timed_out():
            raise gevent.Timeout()

        with pytest.raises(BaseExceptionGroup) as info, task_group() as g:
            g.spawn(timed_out)
        assert not isinstance(info.value, ExceptionGroup)
        assert isinstance(info.value.exceptions[0], gevent.Timeout)


class TestInterrupts:
    def test_keyboard_interrupt_in_the_body_kills_children_and_propagates(self):
        """KeyboardInterrupt in the body kills the children at once and comes out as it is."""
        with pytest.raises(KeyboardInterrupt), task_group(grace=60) as g:
            g.spawn(forever)
            settle()
            raise KeyboardInterrupt
        assert alive_children() == []

    def test_keyboard_interrupt_in_a_child_propagates_ungrouped(self):
        """KeyboardInterrupt in a child kills its siblings and is raised bare at the exit."""

        def interrupt():
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt), task_group(grace=60) as g:
            g.spawn(forever)
            g.spawn(interrupt)
        assert alive_children() == []

    def test_killing_the_body_greenlet_kills_the_children(self):
        """A GreenletExit thrown into the body while it waits ends every child before it propagates."""
        entered = Event()

        def body():
            with task_group(grace=60) as g:
                g.spawn(forever)
                entered.set()

        runner = gevent.spawn(body)
        entered.wait()
        settle()
        runner.kill(block=True)
        assert runner.successful() and alive_children() == []


class TestCancellation:
    def test_timeout_cancels_and_raises_deadline_exceeded(self, clock):
        """After timeout the children are cancelled; with no other error the exit raises DeadlineExceeded."""
        outcome = []

        def body():
            try:
                with task_group(timeout=5, clock=clock) as g:
                    g.spawn(watch, g.ctx)
            except DeadlineExceeded as exc:
                outcome.append(exc)

        runner = gevent.spawn(body)
        clock.wait_for_sleepers(1)
        clock.advance(5)
        runner.join(5)
        assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError)

    def test_timeout_with_a_real_error_raises_the_group(self, clock):
        """A child that fails when cancelled by the timeout is a real error: the group is raised."""
        outcome = []

        def cleanup_fails(ctx):
            ctx.wait()
            raise OSError("cleanup failed")

        def body():
            try:
                with task_group(timeout=5, clock=clock) as g:
                    g.spawn(cleanup_fails, g.ctx)
            except ExceptionGroup as eg:
                outcome.append(eg)

        runner = gevent.spawn(body)
        clock.wait_for_sleepers(1)
        clock.advance(5)
        runner.join(5)
        assert [type(e) for e in outcome[0].exceptions] == [OSError]

    def test_parent_cancel_kills_ignoring_children_after_grace(self, clock):
        """The parent ending cancels the group; a child ignoring it dies after grace; Canceled is raised."""
        parent = with_cancel(None, clock)
        outcome = []

        def body():
            try:
                with task_group(parent, grace=3, clock=clock) as g:
                    g.spawn(forever)
            except Canceled as exc:
                outcome.append(exc)

        runner = gevent.spawn(body)
        settle()
        parent.cancel()
        clock.wait_for_sleepers(1)
        clock.advance(2.9)
        assert not outcome and len(alive_children()) == 1
        clock.advance(0.1)
        runner.join(5)
        assert len(outcome) == 1 and alive_children() == []

    def test_cancel_exits_quietly(self):
        """g.cancel() ends the children's wait, and the group exits without raising."""
        ended = []
        with task_group() as g:
            g.spawn(watch, g.ctx, ended)
            g.cancel()
            assert g.cancelled
        assert len(ended) == 1

    def test_the_echo_of_cancel_in_the_body_is_swallowed(self):
        """The body raising the group's own Canceled after g.cancel() exits quietly."""
        with task_group() as g:
            g.cancel()
            g.ctx.raise_if_done()


class TestStart:
    def test_start_returns_the_started_value_and_the_child_runs_on(self):
        """start() returns what the child passed to started(); the child keeps running in the group."""
        later = []

        def server(port, task_status):
            task_status.started(port + 1)
            later.append("served")

        with task_group() as g:
            assert g.start(server, 8000) == 8001
        assert later == ["served"]

    def test_failure_before_started_is_raised_by_start_not_the_group(self):
        """A child failing before started(): start() raises it, and the group does not count it."""

        def broken(task_status):
            raise ConnectionError("no port")

        with task_group() as g:
            with pytest.raises(ConnectionError):
                g.start(broken)
            settle()
            assert not g.cancelled

    def test_returning_without_started_is_an_error(self):
        """A child that returns without calling started() makes start() raise TaskGroupError."""
        with task_group() as g, pytest.raises(TaskGroupError, match="started"):
            g.start(lambda task_status: None)

    def test_started_twice_is_an_error(self):
        """Calling task_status.started() twice raises TaskGroupError in the child, which fails the group."""

        def twice(task_status):
            task_status.started()
            task_status.started()

        with pytest.raises(ExceptionGroup) as info, task_group() as g:
            g.start(twice)
        assert isinstance(info.value.exceptions[0], TaskGroupError)

    def test_start_raises_when_the_group_is_cancelled_first(self):
        """start() waiting for a child gives up with Canceled when the group is cancelled."""

        def slow(task_status):
            forever()

        with task_group(grace=0) as g:
            gevent.spawn(lambda: (settle(), g.cancel()))
            with pytest.raises(Canceled):
                g.start(slow)


class TestNesting:
    def test_inner_group_inherits_the_outer_context(self):
        """task_group() inside a child derives from the outer group: cancelling the outer reaches it."""
        ended = []

        def child():
            with task_group() as inner:
                inner.spawn(watch, inner.ctx, ended)

        with task_group() as outer:
            outer.spawn(child)
            settle()
            outer.cancel()
        assert len(ended) == 1

    def test_inner_failure_propagates_as_a_nested_group(self):
        """An inner group's ExceptionGroup is a real error of the outer group."""

        def child():
            with task_group() as inner:
                inner.spawn(fail, "deep")

        with pytest.raises(ExceptionGroup) as info, task_group() as outer:
            outer.spawn(child)
        inner = info.value.exceptions[0]
        assert isinstance(inner, ExceptionGroup) and str(inner.exceptions[0]) == "deep"
        assert alive_children() == []

    def test_groups_nested_in_the_body_unwind_in_order(self):
        """An inner group in the body of an outer one is closed before the outer one."""
        order = []
        with task_group() as outer:
            outer.spawn(order.append, "outer child")
            with task_group() as inner:
                assert inner.ctx is not outer.ctx
                inner.spawn(order.append, "inner child")
            order.append("inner closed")
        assert order.index("inner closed") > order.index("inner child")
