"""
The one lifecycle (issue 15): every component provides IComponent, works in a
``with`` block, and ``stop(timeout)`` answers with a bool; stopping from one
of its own greenlets is refused (issue 14 item 4).
"""

import gc

import gevent
import pytest
from gevent.event import Event
from zope.interface.verify import verifyClass, verifyObject

from greenworks import Dispatcher, JobRunner, ReentrantStopError, Runner, State, TaskManager, _greenlets, job
from greenworks._component import Lifecycle, owner_of
from greenworks.exceptions import Canceled, InvalidArgument
from greenworks.interfaces import IComponent
from greenworks.testing import settle


def stubborn(ctx):
    """A worker that ignores its context: only a kill ends it."""
    gevent.sleep(3600)


def polite(ctx):
    ctx.wait()


def build(kind, clock, work=polite):
    """Build a running component of *kind* that has one piece of *work* in flight."""
    if kind == "runner":
        component = Runner(lambda task: work, stop_timeout=None, clock=clock)
        component.apply_tasks(["t"])
    elif kind == "dispatcher":
        # Dispatcher tasks get no context: a polite one waits for the test's release.
        component = Dispatcher(10, 1, 2, task_timeout=None, clock=clock).start()
        stop = Event()
        component.dispatch(lambda: work(_Waiter(stop)))
        component._stop_event_for_test = stop
    elif kind == "taskmanager":
        component = TaskManager(1, 2, None, clock=clock)
        component.go_func("t", work)
    else:
        component = JobRunner(tick=60, clock=clock)
        stop = Event()
        component.push_and_await([job("t", lambda: work(_Waiter(stop)))])
        component._stop_event_for_test = stop
    settle()
    return component


class _Waiter:
    """A ctx stand-in for a job: jobs get no context, so a polite job waits on an Event."""

    def __init__(self, event):
        self._event = event

    def wait(self, timeout=None):
        return self._event.wait(timeout)


KINDS = ["runner", "dispatcher", "taskmanager", "jobs"]
CLASSES = {"runner": Runner, "dispatcher": Dispatcher, "taskmanager": TaskManager, "jobs": JobRunner}


class TestInterface:
    @pytest.mark.parametrize("kind", KINDS)
    def test_provides_icomponent(self, kind, clock):
        """verifyClass and verifyObject(IComponent) hold for each of the four components."""
        component = build(kind, clock)
        try:
            assert verifyClass(IComponent, CLASSES[kind])
            assert verifyObject(IComponent, component)
            assert component.state is State.RUNNING and component.start() is component
            snap = component.snapshot()
            assert {"component", "name", "state", "started_at"} <= set(snap)
            assert snap["state"] == "running" and snap["started_at"].endswith("+00:00")
        finally:
            _release(component)
            component.stop(timeout=5)


def _release(component):
    stop = getattr(component, "_stop_event_for_test", None)
    if stop is not None:
        stop.set()


class TestStop:
    @pytest.mark.parametrize("kind", KINDS)
    def test_clean_stop_returns_true(self, kind, clock):
        """stop(timeout) returns True when everything ended in time; nothing is left alive."""
        component = build(kind, clock)
        _release(component)
        assert component.stop(timeout=5) is True
        assert component.state is State.STOPPED
        assert _greenlets.alive() == []

    @pytest.mark.parametrize("kind", KINDS)
    def test_stragglers_are_killed_and_stop_returns_false(self, kind, clock):
        """Work ignoring cancellation is killed after the timeout; stop returns False, never raises."""
        component = build(kind, clock, work=stubborn)
        stopper = gevent.spawn(component.stop, 2.0)
        clock.wait_for_sleepers(1)
        clock.advance(2.0)
        assert stopper.get(timeout=10) is False
        assert component.state is State.STOPPED
        assert _greenlets.alive() == []

    @pytest.mark.parametrize("kind", KINDS)
    def test_with_block_starts_and_stops(self, kind, clock):
        """``with component:`` leaves it stopped, with no greenlet left, even when the block raises."""
        component = build(kind, clock)
        _release(component)
        with pytest.raises(KeyError), component as entered:
            assert entered is component
            raise KeyError("inside")
        assert component.state is State.STOPPED and _greenlets.alive() == []

    @pytest.mark.parametrize("kind", ["runner", "taskmanager", "jobs"])
    def test_stop_from_an_own_greenlet_raises(self, kind, clock):
        """[issue 14 item 4] stop() from one of the component's own workers raises ReentrantStopError."""
        holder = {}
        outcome = Event()
        caught = []

        def work(ctx):
            try:
                holder["c"].stop()
            except ReentrantStopError as exc:
                caught.append(exc)
            outcome.set()

        if kind == "runner":
            holder["c"] = Runner(lambda task: work, clock=clock)
            holder["c"].apply_tasks(["t"])
        elif kind == "taskmanager":
            holder["c"] = TaskManager(1, 1, None, clock=clock)
            holder["c"].go_func("t", work)
        else:
            holder["c"] = JobRunner(clock=clock)
            holder["c"].push_and_await([job("t", lambda: work(None))])
        outcome.wait(timeout=5)
        assert len(caught) == 1 and holder["c"].name in str(caught[0])
        assert holder["c"].stop(timeout=5) is True

    def test_dispatcher_stop_from_its_own_task_does_not_wait_for_itself(self, clock):
        """A Dispatcher stopped from one of its own tasks stops the others and never deadlocks."""
        pool = Dispatcher(10, 2, 2, clock=clock).start()
        result = pool.submit(lambda: pool.stop(drain=False))
        assert result.get(timeout=5) is True
        settle()
        assert pool.state is State.STOPPED and _greenlets.alive() == []


class TestDispatcherHandles:
    """[issue 14 item 2] No submit() handle is ever stranded."""

    def test_quit_with_cancel_pending_resolves_every_handle(self, clock):
        """quit(cancel_pending=True) resolves the handles of tasks that did not run with Canceled at once."""
        pool = Dispatcher(10, 1, 1, clock=clock).start()
        gate = Event()
        first = pool.submit(gate.wait)
        settle()
        waiting = [pool.submit(lambda i=i: i) for i in range(5)]
        stopper = gevent.spawn(pool.quit, False, True)
        settle()
        gate.set()
        assert stopper.get(timeout=5) == 0
        assert first.successful()
        for handle in waiting:
            assert handle.ready() and isinstance(handle.exception, Canceled) and handle.cancelled()
        assert pool.stats()["cancelled"] == 5

    def test_quit_without_cancel_keeps_the_backlog_and_says_so(self, clock, caplog):
        """quit() keeps the backlog for the next start, returns how many tasks wait, and logs it once."""
        pool = Dispatcher(10, 1, 1, clock=clock).start()
        gate = Event()
        pool.submit(gate.wait)
        settle()
        waiting = [pool.submit(lambda i=i: i) for i in range(3)]
        stopper = gevent.spawn(pool.quit)
        settle()
        gate.set()
        assert stopper.get(timeout=5) == 3
        assert [r.getMessage() for r in caplog.records if "stay queued" in r.getMessage()] == [
            "dispatcher 'dispatcher': 3 accepted task(s) stay queued until the next start()"
        ]
        assert not any(h.ready() for h in waiting)
        pool.start()
        assert [h.get(timeout=5) for h in waiting] == [0, 1, 2]
        pool.stop()

    def test_submit_before_start_warns_once(self, clock, caplog):
        """Tasks submitted to a pool that is not running wait for start(), and it says so once."""
        pool = Dispatcher(10, 0, 1, clock=clock)
        handles = [pool.submit(lambda i=i: i) for i in range(3)]
        warnings = [r.getMessage() for r in caplog.records if "wait for start()" in r.getMessage()]
        assert warnings == ["dispatcher 'dispatcher' is new: accepted tasks wait for start()"]
        with pool:
            pass
        assert [h.get() for h in handles] == [0, 1, 2]

    def test_cancel_before_start_and_after(self, clock):
        """cancel() is True for a task not started (it never runs, get() raises Canceled), False after."""
        pool = Dispatcher(10, 1, 1, clock=clock).start()
        gate = Event()
        ran = []
        running = pool.submit(gate.wait)
        settle()
        queued = pool.submit(ran.append, "queued")
        assert queued.cancel() is True and queued.cancel() is True and queued.cancelled()
        assert running.cancel() is False
        gate.set()
        with pytest.raises(Canceled):
            queued.get(timeout=1)
        pool.stop()
        assert ran == [] and running.result() is True and running.cancel() is False

    def test_add_done_callback(self, clock):
        """add_done_callback(fn) calls fn(handle) once the outcome is known, also when already known."""
        pool = Dispatcher(10, 1, 1, clock=clock).start()
        seen = []
        handle = pool.submit(lambda: 42)
        handle.add_done_callback(lambda h: seen.append(("late", h.get())))
        settle()
        handle.add_done_callback(lambda h: seen.append(("early", h.result())))
        settle()
        assert seen == [("late", 42), ("early", 42)]
        with pytest.raises(InvalidArgument, match="fn"):
            handle.add_done_callback(5)
        pool.stop()

    def test_exit_drains_on_success_and_cancels_on_error(self, clock):
        """``with Dispatcher``: a clean exit runs what was accepted; an exception cancels the backlog."""
        with Dispatcher(10, 1, 1, clock=clock) as pool:
            done = [pool.submit(lambda i=i: i) for i in range(3)]
        assert [h.get() for h in done] == [0, 1, 2]
        gate = Event()
        with pytest.raises(RuntimeError), Dispatcher(10, 1, 1, clock=clock) as pool:
            pool.submit(gate.wait)
            settle()
            later = pool.submit(lambda: "never")
            gevent.spawn_later(0, gate.set)
            raise RuntimeError("inside")
        assert isinstance(later.exception, Canceled)

    def test_a_killed_task_resolves_its_handle(self, clock):
        """A task killed by stop(timeout) leaves its handle holding Canceled, not pending for ever."""
        pool = Dispatcher(10, 1, 1, task_timeout=None, clock=clock).start()
        handle = pool.submit(gevent.sleep, 3600)
        settle()
        stopper = gevent.spawn(pool.stop, 1.0)
        clock.wait_for_sleepers(1)
        clock.advance(1.0)
        assert stopper.get(timeout=5) is False
        assert isinstance(handle.exception, Canceled)


class TestLifecycle:
    def test_header_and_events_hook(self, clock):
        """Lifecycle names itself, checks its name and gives the snapshot header."""
        life = Lifecycle(object(), "thing", "x", clock, None, "greenworks.test")
        assert life.header() == {"component": "thing", "name": "x", "state": "new", "started_at": None}
        life.started()
        assert life.header()["started_at"] == clock.now().isoformat()
        with pytest.raises(InvalidArgument, match="name"):
            Lifecycle(object(), "thing", "", clock, None, "greenworks.test")
        with pytest.raises(InvalidArgument, match="logger"):
            Lifecycle(object(), "thing", "x", clock, "not a logger", "greenworks.test")


class TestTracking:
    """One registry (issue 21): each greenlet records its Lifecycle; only adoption keeps more."""

    def test_a_spawned_greenlet_names_its_lifecycle(self, clock):
        """owner_of, is_own and alive() all read the greenlet's owner; other greenlets are nobody's."""
        life = Lifecycle(object(), "thing", "a", clock, None, "greenworks.test")
        other = Lifecycle(object(), "thing", "b", clock, None, "greenworks.test")
        gate = Event()
        mine = life.spawn("greenworks.thing[a]", gate.wait)
        theirs = other.spawn("greenworks.thing[b]", gate.wait)
        plain = _greenlets.spawn("greenworks.plain", gate.wait)
        foreign = gevent.spawn(gate.wait)
        settle()
        assert owner_of(mine) is life and owner_of(theirs) is other
        assert owner_of(plain) is None and owner_of(foreign) is None and owner_of(object()) is None
        assert life.is_own(mine) and not life.is_own(theirs) and not life.is_own(plain)
        assert not life.is_own(foreign) and not life.is_own(object())
        assert life.alive() == [mine] and other.alive() == [theirs]
        gate.set()
        gevent.joinall([mine, theirs, plain, foreign])
        assert life.alive() == [] and life.is_own(mine)  # a dead greenlet still remembers its owner

    def test_an_adopted_greenlet_belongs_to_both_and_is_named_after_the_adopter(self, clock):
        """adopt() (a ClusterRunner adopting its inner Runner's workers, or any gevent greenlet):
        both components count it as their own; owner_of names the adopter."""
        spawner = Lifecycle(object(), "runner", "inner", clock, None, "greenworks.test")
        adopter = Lifecycle(object(), "cluster", "outer", clock, None, "greenworks.test")
        gate = Event()
        worker = spawner.spawn("greenworks.inner[k]", gate.wait)
        foreign = gevent.spawn(gate.wait)
        assert adopter.adopt(worker) is worker and adopter.adopt(foreign) is foreign
        settle()
        assert owner_of(worker) is adopter and owner_of(foreign) is adopter
        assert spawner.is_own(worker) and adopter.is_own(worker) and adopter.is_own(foreign)
        assert spawner.alive() == [worker]
        assert sorted(adopter.alive(), key=id) == sorted([worker, foreign], key=id)
        gate.set()
        gevent.joinall([worker, foreign])
        assert adopter.alive() == []

    def test_check_not_own_refuses_a_greenlet_adopted_from_another_component(self, clock):
        """Stopping either component from the shared greenlet is refused, not a wait for itself."""
        spawner = Lifecycle(object(), "runner", "inner", clock, None, "greenworks.test")
        adopter = Lifecycle(object(), "cluster", "outer", clock, None, "greenworks.test")

        def body():
            adopter.adopt(gevent.getcurrent())
            refused = []
            for life in (spawner, adopter):
                try:
                    life.check_not_own("stop")
                except ReentrantStopError:
                    refused.append(life.name)
            return refused

        assert spawner.spawn("greenworks.inner[k]", body).get(timeout=5) == ["inner", "outer"]
        spawner.check_not_own("stop")  # from the test's greenlet: allowed

    def test_the_registry_keeps_no_dead_greenlet(self, clock):
        """A greenlet killed before it ever ran, once dropped, leaves no entry behind."""
        life = Lifecycle(object(), "thing", "a", clock, None, "greenworks.test")
        gc.collect()  # earlier tests' dead greenlets
        before = len(_greenlets._spawned)
        greenlet = life.spawn("greenworks.thing[never]", gevent.sleep, 3600)
        assert len(_greenlets._spawned) == before + 1 and _greenlets.alive()[-1] is greenlet
        greenlet.kill()
        assert greenlet.dead and greenlet not in _greenlets.alive()
        del greenlet
        gc.collect()
        assert len(_greenlets._spawned) == before
