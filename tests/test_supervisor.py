"""Supervisor: OTP strategies, restart types, restart intensity escalating through a tree, backoff, stop."""

import json
import logging

import gevent
import pytest
from gevent.event import AsyncResult, Event
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from greenworks import State, _greenlets
from greenworks.backoff import ExponentialBackoff, StaticBackoff
from greenworks.exceptions import InvalidArgument, RestartIntensityExceeded, SupervisorError
from greenworks.interfaces import IChild, IComponent, ISupervisor, IWorker
from greenworks.supervisor import Child, Supervisor
from greenworks.testing import settle


class Probe:
    """Children that log their starts and stops and fail or return when the test says so."""

    def __init__(self):
        self.log = []
        self.orders = {}

    def child(self, name):
        def run(ctx):
            order = self.orders[name] = AsyncResult()
            self.log.append("start " + name)
            try:
                gevent.wait([ctx.done, order], count=1)
                if order.ready() and order.get() == "fail":
                    raise RuntimeError(name + " failed")
            finally:
                self.log.append("stop " + name)

        run.__name__ = name
        return run

    def order(self, name, what="fail"):
        self.orders[name].set(what)
        settle()

    def take(self):
        log, self.log = self.log, []
        return log


@implementer(IWorker)
class Worker:
    """An IWorker child: counts its runs and waits for its context."""

    def __init__(self):
        self.runs = 0

    def run(self, ctx):
        self.runs += 1
        ctx.wait()


@pytest.fixture
def probe():
    return Probe()


def started(supervisor):
    supervisor.start()
    settle()
    return supervisor


class TestInterfaces:
    def test_supervisor_and_child_provide_their_interfaces(self, probe, clock):
        """Supervisor provides ISupervisor (so IComponent and IWorker) and Child provides IChild."""
        verifyClass(ISupervisor, Supervisor)
        verifyClass(IChild, Child)
        sup = Supervisor([probe.child("a")], clock=clock)
        verifyObject(ISupervisor, sup)
        verifyObject(IComponent, sup)
        verifyObject(IWorker, sup)
        verifyObject(IChild, Child(probe.child("a")))


class TestArguments:
    @pytest.mark.parametrize(
        "kwargs, name",
        [
            ({"strategy": "one_for_some"}, "strategy"),
            ({"max_restarts": -1}, "max_restarts"),
            ({"period": 0}, "period"),
            ({"backoff": 2.0}, "backoff"),
            ({"name": ""}, "name"),
        ],
    )
    def test_bad_supervisor_arguments_are_refused_by_name(self, probe, kwargs, name):
        """Each bad argument raises InvalidArgument naming it."""
        with pytest.raises(InvalidArgument, match=name):
            Supervisor([probe.child("a")], **kwargs)

    def test_bad_children_are_refused(self, probe):
        """A non-callable child, a bad restart type or shutdown, and duplicate names are refused."""
        with pytest.raises(InvalidArgument, match="spec"):
            Supervisor([42])
        with pytest.raises(InvalidArgument, match="restart"):
            Child(probe.child("a"), "sometimes")
        with pytest.raises(InvalidArgument, match="shutdown"):
            Child(probe.child("a"), shutdown=float("nan"))
        with pytest.raises(InvalidArgument, match="duplicate"):
            Supervisor([probe.child("a"), Child(probe.child("b"), name="a")])

    def test_a_supervisor_has_one_parent(self, probe):
        """The same supervisor cannot be placed under two parents."""
        sub = Supervisor([probe.child("a")], name="sub")
        Supervisor([sub])
        with pytest.raises(InvalidArgument, match="parent"):
            Supervisor([sub])


class TestOrder:
    def test_children_start_in_order_and_stop_in_reverse(self, probe, clock):
        """Children start first to last and stop last to first, each in a named greenlet."""
        sup = started(Supervisor([probe.child(n) for n in "abc"], name="tree", clock=clock))
        assert probe.take() == ["start a", "start b", "start c"]
        names = sorted(g.name for g in _greenlets.alive() if g.name.startswith("greenworks.tree"))
        assert names == ["greenworks.tree", "greenworks.tree[a]", "greenworks.tree[b]", "greenworks.tree[c]"]
        assert sup.stop() is True
        assert probe.take() == ["stop c", "stop b", "stop a"]
        assert sup.state is State.STOPPED

    def test_iworker_and_callable_children(self, clock):
        """An IWorker's run(ctx) and a plain f(ctx) both run as children."""
        worker = Worker()
        calls = []
        with Supervisor([worker, lambda ctx: (calls.append(1), ctx.wait())], clock=clock) as sup:
            settle()
            assert sup.state is State.RUNNING
        assert worker.runs == 1 and calls == [1]


class TestStrategies:
    def test_one_for_one_restarts_only_the_failed_child(self, probe, clock):
        """one_for_one: the failed child alone is restarted."""
        sup = started(Supervisor([probe.child(n) for n in "abc"], "one_for_one", clock=clock))
        probe.take()
        probe.order("b")
        assert probe.take() == ["stop b", "start b"]
        sup.stop()

    def test_one_for_all_restarts_everyone(self, probe, clock):
        """one_for_all: the others stop in reverse order, then all start again in order."""
        sup = started(Supervisor([probe.child(n) for n in "abc"], "one_for_all", clock=clock))
        probe.take()
        probe.order("b")
        assert probe.take() == ["stop b", "stop c", "stop a", "start a", "start b", "start c"]
        sup.stop()

    def test_rest_for_one_restarts_the_failed_child_and_those_after_it(self, probe, clock):
        """rest_for_one: children started after the failed one stop (reverse) and restart with it."""
        sup = started(Supervisor([probe.child(n) for n in "abcd"], "rest_for_one", clock=clock))
        probe.take()
        probe.order("b")
        assert probe.take() == ["stop b", "stop d", "stop c", "start b", "start c", "start d"]
        sup.stop()


class TestRestartTypes:
    def test_permanent_is_restarted_after_returning(self, probe, clock):
        """A permanent child that returns normally is restarted."""
        sup = started(Supervisor([probe.child("a")], clock=clock))
        probe.take()
        probe.order("a", "return")
        assert probe.take() == ["stop a", "start a"]
        sup.stop()

    def test_transient_is_restarted_only_after_an_error(self, probe, clock):
        """A transient child is restarted after failing, and not after returning."""
        sup = started(Supervisor([Child(probe.child("a"), "transient")], clock=clock))
        probe.take()
        probe.order("a", "fail")
        assert probe.take() == ["stop a", "start a"]
        probe.order("a", "return")
        assert probe.take() == ["stop a"]
        assert sup.snapshot()["children"][0]["status"] == "exited"
        sup.stop()

    def test_transient_killed_from_outside_is_not_restarted(self, clock):
        """A GreenletExit from outside is a normal end: a transient child stays down."""
        sup = started(
            Supervisor([Child(lambda ctx: ctx.wait(), "transient", name="t")], name="k", clock=clock)
        )
        victim = next(g for g in _greenlets.alive() if g.name == "greenworks.k[t]")
        victim.kill()
        settle()
        assert [g.name for g in _greenlets.alive() if g.name.startswith("greenworks.k[")] == []
        sup.stop()

    def test_temporary_is_never_restarted(self, probe, clock):
        """A temporary child that fails is not restarted and leaves the snapshot's running set."""
        sup = started(Supervisor([Child(probe.child("a"), "temporary"), probe.child("b")], clock=clock))
        probe.take()
        probe.order("a")
        assert probe.take() == ["stop a"]
        assert [c["status"] for c in sup.snapshot()["children"]] == ["removed", "running"]
        sup.stop()

    def test_a_child_not_to_be_restarted_leaves_its_siblings_alone(self, probe, clock):
        """Under one_for_all, a temporary child's failure stops nobody."""
        sup = started(
            Supervisor([Child(probe.child("a"), "temporary"), probe.child("b")], "one_for_all", clock=clock)
        )
        probe.take()
        probe.order("a")
        assert probe.take() == ["stop a"]
        sup.stop()

    def test_temporary_sibling_stopped_by_one_for_all_is_not_restarted(self, probe, clock):
        """one_for_all stops a temporary sibling and does not start it again."""
        sup = started(
            Supervisor([probe.child("a"), Child(probe.child("b"), "temporary")], "one_for_all", clock=clock)
        )
        probe.take()
        probe.order("a")
        assert probe.take() == ["stop a", "stop b", "start a"]
        sup.stop()


class TestIntensity:
    def test_too_many_restarts_stop_the_children_and_fail(self, probe, clock, caplog):
        """Over max_restarts within period: children stopped, one ERROR, wait() raises, snapshot shows it."""
        caplog.set_level(logging.WARNING, "greenworks.supervisor")
        sup = started(Supervisor([probe.child("a"), probe.child("b")], max_restarts=2, name="s", clock=clock))
        for _ in range(2):
            probe.order("a")
        assert sup.state is State.RUNNING
        probe.take()
        probe.order("a")
        assert probe.take() == ["stop a", "stop b"]
        with pytest.raises(RestartIntensityExceeded) as info:
            sup.wait(0)
        assert (info.value.supervisor, info.value.child, info.value.max_restarts) == ("s", "a", 2)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert [r.levelname for r in caplog.records].count("ERROR") == 1
        assert "more than 2 restarts" in sup.snapshot()["error"]
        assert sup.state is State.STOPPED and sup.stop() is True

    def test_restarts_older_than_the_period_do_not_count(self, probe, clock):
        """Failures further apart than period never add up to the intensity."""
        sup = started(Supervisor([probe.child("a")], max_restarts=1, period=5.0, clock=clock))
        for _ in range(4):
            probe.order("a")
            clock.advance(5.0)
        assert sup.state is State.RUNNING
        assert sup.snapshot()["children"][0]["restarts"] == 4
        sup.stop()

    def test_escalation_through_a_three_level_tree(self, clock, caplog):
        """A crashing leaf exhausts its supervisor, then the middle one, then the root, which fails once."""
        caplog.set_level(logging.WARNING, "greenworks.supervisor")
        crashes = []

        def crash(ctx):
            crashes.append(1)
            raise RuntimeError("crash")

        steady = Event()
        leaf = Supervisor([crash], max_restarts=1, name="leaf", clock=clock)
        mid = Supervisor(
            [leaf, Child(lambda ctx: ctx.wait(), name="sibling")], max_restarts=1, name="mid", clock=clock
        )
        root = Supervisor(
            [mid, Child(lambda ctx: (steady.set(), ctx.wait()), name="steady")],
            max_restarts=1,
            name="root",
            clock=clock,
        )
        root.start()
        with pytest.raises(RestartIntensityExceeded) as info:
            root.wait(timeout=60)
        # leaf: 2 crashes per run; mid restarts leaf once (2 runs); root restarts mid once (2 runs).
        assert len(crashes) == 8
        assert (info.value.supervisor, info.value.child) == ("root", "mid")
        assert info.value.__cause__.supervisor == "mid"
        assert [r.levelname for r in caplog.records].count("ERROR") == 1
        snap = root.snapshot()
        assert snap["children"][0]["supervisor"]["error"].startswith("supervisor 'mid'")
        assert snap["children"][0]["supervisor"]["children"][0]["supervisor"]["name"] == "leaf"
        assert _greenlets.alive() == []

    def test_a_child_supervisor_is_stopped_by_its_parent_only(self, probe, clock):
        """stop() of a supervisor running under a parent raises SupervisorError; the parent's stop ends it."""
        sub = Supervisor([probe.child("a")], name="sub", clock=clock)
        root = started(Supervisor([sub], name="root", clock=clock))
        with pytest.raises(SupervisorError, match="parent"):
            sub.stop()
        assert root.stop() is True
        assert sub.state is State.STOPPED and probe.take() == ["start a", "stop a"]


class TestBackoff:
    def test_restart_waits_for_the_backoff(self, probe, clock):
        """With StaticBackoff(2) the child restarts two clock seconds after it failed, not before."""
        sup = started(Supervisor([probe.child("a")], backoff=StaticBackoff(2.0), clock=clock))
        probe.take()
        probe.order("a")
        assert probe.take() == ["stop a"]
        assert sup.snapshot()["children"][0]["status"] == "restarting"
        clock.advance(1.9)
        assert probe.take() == []
        clock.advance(0.1)
        assert probe.take() == ["start a"]
        sup.stop()

    def test_backoff_grows_with_restarts_in_a_row(self, probe, clock):
        """Consecutive restarts within the period wait backoff.duration(1), (2), ..."""
        sup = started(
            Supervisor([probe.child("a")], max_restarts=5, backoff=ExponentialBackoff(1.0, 60.0), clock=clock)
        )
        probe.order("a")
        clock.advance(1.0)
        probe.take()
        probe.order("a")
        clock.advance(1.0)
        assert probe.take() == ["stop a"]
        clock.advance(1.0)
        assert probe.take() == ["start a"]
        sup.stop()

    def test_stop_during_backoff_stops_at_once(self, probe, clock):
        """stop() while a restart waits for its backoff returns without restarting anything."""
        sup = started(
            Supervisor([probe.child("a"), probe.child("b")], backoff=StaticBackoff(60.0), clock=clock)
        )
        probe.take()
        probe.order("a")
        assert sup.stop() is True
        assert probe.take() == ["stop a", "stop b"]
        assert _greenlets.alive() == []


class TestStopping:
    def test_a_child_ignoring_its_context_is_killed_after_shutdown(self, clock):
        """A child that ignores cancellation is killed shutdown seconds later and stop() returns False."""
        sup = started(Supervisor([Child(lambda ctx: Event().wait(), name="deaf", shutdown=3.0)], clock=clock))
        stopper = gevent.spawn(sup.stop)
        clock.wait_for_sleepers(1)
        clock.advance(2.9)
        assert not stopper.ready()
        clock.advance(0.1)
        assert stopper.get(timeout=5) is False
        assert _greenlets.alive() == []

    def test_stop_from_a_child_is_refused(self, clock):
        """A child calling its supervisor's stop() gets ReentrantStopError."""
        errors = []
        holder = []

        def child(ctx):
            try:
                holder[0].stop()
            except RuntimeError as exc:
                errors.append(type(exc).__name__)
            ctx.wait()

        sup = Supervisor([child], clock=clock)
        holder.append(sup)
        started(sup)
        assert errors == ["ReentrantStopError"]
        sup.stop()

    def test_wait_times_out_while_running(self, probe, clock):
        """wait(0) is False while the supervisor runs, True once it stopped cleanly."""
        sup = started(Supervisor([probe.child("a")], clock=clock))
        assert sup.wait(0) is False
        sup.stop()
        assert sup.wait(0) is True

    def test_restart_after_stop(self, probe, clock):
        """A stopped root can be started again and runs its children afresh."""
        sup = started(Supervisor([probe.child("a")], clock=clock))
        sup.stop()
        started(sup)
        assert probe.take() == ["start a", "stop a", "start a"]
        sup.stop()


class TestSnapshot:
    def test_snapshot_is_a_json_tree(self, probe, clock):
        """snapshot() is JSON: header, settings and children, a child supervisor's own snapshot nested."""
        sub = Supervisor([probe.child("b")], name="sub", clock=clock)
        sup = Supervisor([probe.child("a"), sub], "rest_for_one", name="root", clock=clock)
        assert [c["status"] for c in sup.snapshot()["children"]] == ["new", "new"]
        started(sup)
        probe.order("a")
        snap = json.loads(json.dumps(sup.snapshot()))
        assert (snap["component"], snap["name"], snap["state"], snap["strategy"]) == (
            "supervisor",
            "root",
            "running",
            "rest_for_one",
        )
        a, b = snap["children"]
        assert (a["status"], a["starts"], a["restarts"], a["kind"]) == ("running", 2, 1, "worker")
        assert a["last_error"] == "RuntimeError: a failed" and a["started_at"].endswith("+00:00")
        assert b["kind"] == "supervisor" and b["supervisor"]["children"][0]["name"] == "b"
        assert snap["restarts_in_period"] == 1
        sup.stop()
