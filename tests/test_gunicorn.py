"""Tests for greenworks.gunicorn: the Runtime and its hooks, then real gunicorn -k gevent end to end."""

import datetime
import http.client
import os
import re
import signal
import subprocess
import sys
import time
import types

import gevent
import pytest
from _gunicorn_worker import gevent_worker_unavailable, stop_arbiter
from gevent.event import Event
from gevent.queue import Queue
from zope.interface import implementer

import greenworks.gunicorn
from greenworks import Dispatcher, JobRunner, Runner, State, TaskManager, _greenlets
from greenworks.coordination import FileLock
from greenworks.exceptions import InvalidArgument
from greenworks.gunicorn import Runtime
from greenworks.interfaces import IComponent

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "07_gunicorn_app")


class Component:
    """A component recording start/stop into a shared log; stop may block until released."""

    def __init__(self, name, log, block=False):
        self.name = name
        self.log = log
        self.block = block
        self.release = Event()

    def start(self):
        self.log.append("start " + self.name)
        return self

    def stop_and_wait(self):
        self.log.append("stop " + self.name)
        if self.block:
            try:
                self.release.wait()
            except gevent.GreenletExit:
                self.log.append("killed " + self.name)
                raise


def fake_worker(graceful_timeout=10):
    return types.SimpleNamespace(alive=True, cfg=types.SimpleNamespace(graceful_timeout=graceful_timeout))


class _CtxWorker:
    def __init__(self):
        self.ctx = None
        self.started = Event()
        self.finished = Event()

    def run(self, ctx):
        self.ctx = ctx
        self.started.set()
        ctx.wait()
        self.finished.set()


class TestRuntime:
    def test_starts_in_order_and_stops_in_reverse(self, clock):
        """Components start in registration order and stop in reverse order."""
        log = []
        rt = Runtime(clock=clock)
        a, b = Component("a", log), Component("b", log)
        rt.add(a.start, name="a")
        rt.add(b.start, name="b")
        rt.start()
        rt.start()  # idempotent in one process
        assert rt.running and rt.components() == {"a": a, "b": b}
        assert rt.stop(timeout=5)
        assert log == ["start a", "start b", "stop b", "stop a"]
        assert not rt.running and rt.status()["state"] == "stopped"

    def test_add_is_a_decorator_and_takes_an_explicit_stop(self, clock):
        """add() returns its start callable; a stop= callable receives the started value."""
        stopped = []
        rt = Runtime(clock=clock)

        @rt.add
        def thing():
            return types.SimpleNamespace(stop=lambda: stopped.append("thing"))

        rt.add(lambda: "x", stop=stopped.append, name="x")
        assert callable(thing)
        rt.start()
        assert set(rt.components()) == {"thing", "x"}
        with pytest.raises(InvalidArgument):
            rt.add(42)
        rt.stop(timeout=5)
        assert stopped == ["x", "thing"]

    def test_worker_gets_ctx_cancelled_on_stop(self, clock):
        """add_worker() runs an IWorker in a named greenlet whose ctx is cancelled by stop()."""
        rt = Runtime(clock=clock)
        worker = rt.add_worker(_CtxWorker(), name="poller")
        rt.start()
        worker.started.wait(timeout=5)
        assert "greenworks.gunicorn.worker[poller]" in [g.name for g in _greenlets.alive()]
        assert worker.ctx is rt.ctx and not worker.ctx.done.is_set()
        assert rt.stop(timeout=5)
        assert worker.finished.is_set()

    def test_failing_start_stops_the_started_ones_and_raises(self, clock):
        """A start callable that raises stops the components started before it and propagates."""
        log = []
        rt = Runtime(clock=clock)
        rt.add(Component("a", log).start, name="a")

        def broken():
            raise RuntimeError("no database")

        rt.add(broken)
        with pytest.raises(RuntimeError, match="no database"):
            rt.start()
        assert log == ["start a", "stop a"]

    def test_watcher_begins_stop_when_worker_stops_accepting(self, clock):
        """[MATCH] post_worker_init starts the runtime; worker.alive turning False stops it within a poll."""
        log = []
        rt = Runtime(poll=0.25, clock=clock)
        rt.add(Component("jobs", log).start, name="jobs")
        worker = fake_worker()
        rt.post_worker_init(worker)
        try:
            assert log == ["start jobs"]
            clock.advance(1)
            assert rt.running
            worker.alive = False  # SIGTERM, max_requests or reload
            clock.advance(0.25)
            assert log == ["start jobs", "stop jobs"] and rt.ctx.done.is_set()
        finally:
            rt.worker_exit(None, worker)
        assert rt.status()["state"] == "stopped" and _greenlets.alive() == []

    def test_worker_exit_kills_what_outlives_graceful_timeout(self, clock):
        """[MATCH] worker_exit waits for the drain until graceful_timeout (less the margin), then kills."""
        log = []
        rt = Runtime(margin=1.0, clock=clock)
        slow = Component("slow", log, block=True)
        rt.add(slow.start, name="slow")
        worker = fake_worker(graceful_timeout=10)
        rt.post_worker_init(worker)
        rt.begin_stop()
        clock.advance(4)  # 4 of the 10 s pass while the component drains
        exiting = gevent.spawn(rt.worker_exit, None, worker)
        clock.wait_for_sleepers(1)
        assert rt.remaining(10) == pytest.approx(5.0)
        clock.advance(4.9)
        assert not exiting.ready()
        clock.advance(0.1)
        exiting.join(timeout=5)
        assert log == ["start slow", "stop slow", "killed slow"]
        assert rt.status()["state"] == "stopped"

    def test_worker_int_drains_like_worker_exit(self, clock):
        """worker_int (SIGINT/SIGQUIT) stops the runtime and returns once drained."""
        log = []
        rt = Runtime(clock=clock)
        rt.add(Component("a", log).start, name="a")
        rt.post_worker_init(fake_worker())
        rt.worker_int(fake_worker())
        assert log == ["start a", "stop a"] and rt.status()["state"] == "stopped"

    def test_hooks_are_no_ops_where_the_runtime_never_started(self, clock):
        """worker_exit in the master (runtime not started there) does nothing."""
        log = []
        rt = Runtime(clock=clock)
        rt.add(Component("a", log).start, name="a")
        rt.worker_exit(None, fake_worker())
        assert log == [] and rt.status()["state"] == "idle" and rt.ctx is None

    def test_status_reports_snapshots(self, clock):
        """status() is JSON-ready and includes each component's snapshot()."""
        rt = Runtime(clock=clock)
        rt.add(lambda: types.SimpleNamespace(snapshot=lambda: {"ok": 1}, stop=lambda: None), name="s")
        rt.start()
        try:
            status = rt.status()
            assert status == {"pid": os.getpid(), "state": "running", "components": {"s": {"ok": 1}}}
        finally:
            rt.stop(timeout=5)

    def test_component_without_a_stop_method_is_rejected_at_start(self, clock):
        """A component with neither stop= nor stop_and_wait/stop/close fails start(), naming stop."""
        rt = Runtime(clock=clock)
        rt.add(lambda: object(), name="opaque")
        with pytest.raises(InvalidArgument, match="stop must be"):
            rt.start()

    def test_the_four_components_need_no_stop_argument(self, clock):
        """[issue 14 item 9, issue 15] runtime.add() of a Runner, Dispatcher, TaskManager and JobRunner
        needs no stop=; an unstarted Dispatcher is started and each is stopped through stop(timeout)."""
        rt = Runtime(clock=clock)
        built = {}

        def make(kind, factory):
            def start():
                built[kind] = factory()
                return built[kind]

            rt.add(start, name=kind)

        make("runner", lambda: Runner(lambda task: lambda ctx: ctx.wait(), clock=clock))
        make("dispatcher", lambda: Dispatcher(10, 1, 2, clock=clock))  # returned unstarted
        make("manager", lambda: TaskManager(1, 2, 1.0, clock=clock))
        make("jobs", lambda: JobRunner(clock=clock))
        rt.start()
        assert {kind: c.state for kind, c in built.items()} == dict.fromkeys(built, State.RUNNING)
        built["runner"].apply_tasks(["t"])
        done = built["dispatcher"].submit(lambda: "ran")
        assert rt.stop(timeout=5)
        assert done.get(timeout=1) == "ran"
        assert {kind: c.state for kind, c in built.items()} == dict.fromkeys(built, State.STOPPED)
        assert _greenlets.alive() == []

    def test_components_get_what_is_left_of_graceful_timeout(self, clock):
        """A component's stop(timeout) receives what is left of graceful_timeout less the margin."""
        budgets = []

        @implementer(IComponent)
        class Recording:
            name = "recording"
            state = State.RUNNING

            def start(self):
                return self

            def stop(self, timeout=None):
                budgets.append(timeout)
                return True

            def snapshot(self):
                return {}

            def __enter__(self):
                return self

            def __exit__(self, *exc_info):
                pass

        rt = Runtime(margin=1.0, clock=clock)
        rt.add(Recording, name="recording")
        worker = fake_worker(graceful_timeout=10)
        rt.post_worker_init(worker)
        clock.advance(3)
        rt.worker_exit(None, worker)
        assert budgets == [pytest.approx(9.0)]

    def test_bad_arguments_are_rejected(self):
        """Runtime and add()/add_worker() name bad arguments."""
        with pytest.raises(InvalidArgument, match="poll must be"):
            Runtime(poll=0)
        with pytest.raises(InvalidArgument, match="margin must be"):
            Runtime(margin=-1)
        rt = Runtime()
        with pytest.raises(InvalidArgument, match="start must be"):
            rt.add(None)
        with pytest.raises(InvalidArgument, match="stop must be"):
            rt.add(lambda: 1, stop=5)
        with pytest.raises(InvalidArgument, match="worker must be"):
            rt.add_worker(object())

    def test_module_hooks_drive_the_default_runtime(self):
        """The module-level hooks are the default runtime's, with gunicorn's signatures."""
        assert greenworks.gunicorn.runtime.status()["state"] == "idle"
        for name, arity in (("post_worker_init", 1), ("worker_int", 1), ("worker_exit", 2)):
            fn = getattr(greenworks.gunicorn, name)
            assert fn.__code__.co_argcount == arity


# -- end to end: real gunicorn -k gevent -w 3 -----------------------------------------


RAN = re.compile(r"\[(\d+)\] \[INFO\] ran (\w+)@(\S+) (\d+)$")


class Gunicorn:
    """A real gunicorn arbiter running the example app; stderr lines arrive on a queue."""

    def __init__(self, tmp_path, *extra):
        self.lock = str(tmp_path / "jobs.lock")
        self.log = str(tmp_path / "jobs.log")
        port = self.port = _free_port()
        env = dict(
            os.environ,
            GREENWORKS_EXAMPLE_TICK="1",
            GREENWORKS_EXAMPLE_LOCK=self.lock,
            GREENWORKS_EXAMPLE_LOG=self.log,
            GREENWORKS_EXAMPLE_BIND="127.0.0.1:%d" % port,
        )
        args = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *extra]
        if _has_setting("control_socket_disable"):
            args.append("--no-control-socket")  # gunicorn >= 24 would share ~/.gunicorn/gunicorn.ctl
        self.proc = subprocess.Popen(
            [*args, "app:application"],
            cwd=EXAMPLE,
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.lines = []
        self.queue = Queue()
        self._reader = gevent.spawn(self._read)

    def _read(self):
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.lines.append(line)
            self.queue.put(line)
        self.queue.put(None)

    def expect(self, pattern, timeout=15):
        """Return the match of the next stderr line matching *pattern* (a regex)."""
        regex = re.compile(pattern)
        with gevent.Timeout(timeout, AssertionError("no line matching %r:\n%s" % (pattern, self.tail()))):
            while True:
                line = self.queue.get()
                if line is None:
                    raise AssertionError("gunicorn exited:\n" + self.tail())
                match = regex.search(line)
                if match:
                    return match

    def tail(self):
        return "\n".join(self.lines[-60:])

    def wait_for(self, pattern):
        """Like :meth:`expect`, but a line already read also counts."""
        regex = re.compile(pattern)
        if not any(regex.search(line) for line in self.lines):
            self.expect(pattern)

    def count(self, text):
        """How many stderr lines so far contain *text*."""
        return sum(1 for line in self.lines if text in line)

    def recycle(self, pid, limit=60):
        """Send two requests to worker *pid*, which ``--max-requests 2`` recycles.

        The workers share one listening socket and the kernel hands each
        connection to whichever hub accepts first, so connections are opened
        one by one until *pid* holds one; the others carry no request and
        count towards no worker's max_requests. So only *pid* recycles, and
        the other workers stay up to take the ticks.
        """
        held = []
        try:
            for _ in range(limit):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.connect()
                held.append(conn)
                if self._accepted_by(conn.sock, pid):
                    for _ in range(2):
                        conn.request("GET", "/")
                        assert conn.getresponse().read().split()[-1] == str(pid).encode()
                    return
            raise AssertionError("pid %d accepted none of %d connections:\n%s" % (pid, limit, self.tail()))
        finally:
            for conn in held:
                conn.close()

    def _accepted_by(self, sock, pid, limit=10):
        """Whether worker *pid* accepted the server side of *sock*, a connected client socket.

        /proc/net/tcp shows the server side with inode 0 until a worker
        accepts it (nothing here can be woken by that, hence the poll); then
        the worker that accepted it holds ``socket:[inode]`` among its fds.
        """
        here = "0100007F:%04X" % self.port
        there = "0100007F:%04X" % sock.getsockname()[1]
        deadline = time.monotonic() + limit
        while True:
            with open("/proc/net/tcp") as f:
                inodes = [row[9] for row in map(str.split, f) if row[1] == here and row[2] == there]
            if inodes and inodes[0] != "0":
                break
            assert time.monotonic() < deadline, "no worker accepted a connection in %ss" % limit
            gevent.sleep(0.01)
        target = "socket:[%s]" % inodes[0]
        fds = "/proc/%d/fd" % pid
        for fd in os.listdir(fds):
            try:
                if os.readlink(os.path.join(fds, fd)) == target:
                    return True
            except FileNotFoundError:  # an fd closed while we looked
                pass
        return False

    def leader_pid(self):
        return int(FileLock(self.lock).read_holder().split(":")[1])

    def entries(self):
        """The job log as [(job, tick epoch seconds, pid)], in file order."""
        out = []
        with open(self.log) as f:
            for line in f:
                key, pid = line.split()
                job_id, at = key.split("@")
                out.append((job_id, int(datetime.datetime.fromisoformat(at).timestamp()), int(pid)))
        return out

    def close(self):
        """SIGTERM the arbiter (a graceful stop), then SIGKILL whatever of its group is left."""
        try:
            stop_arbiter(self.proc)
        finally:
            self._reader.join(timeout=5)
            self._reader.kill()  # a no-op once it saw EOF, as it should have
            self.proc.stderr.close()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_setting(name):
    from gunicorn.config import KNOWN_SETTINGS

    return any(s.name == name for s in KNOWN_SETTINGS)


def _boot(server):
    pids = {int(server.expect(r"runtime started in pid (\d+)").group(1)) for _ in range(3)}
    assert len(pids) == 3
    return pids


def _wait_runs(server, count, pred=lambda m: True):
    """Wait for *count* job lines matching *pred*, ending with a tick whose two jobs both ran."""
    seen = []
    while True:
        m = server.expect(RAN.pattern)
        if pred(m):
            seen.append(m)
        if len(seen) >= count and sum(1 for x in seen if x.group(3) == seen[-1].group(3)) == 2:
            return seen


def _missed(server):
    """Ticks the runners reported missed (a hub busy past a boundary on this loaded machine)."""
    return sum(int(m.group(1)) for m in map(re.compile(r"missed (\d+) tick").search, server.lines) if m)


def _check_once_per_tick(entries, server):
    """Each job ran at most once per tick and skipped no tick it did not report missed; return {tick: pid}.

    A tick is only ever skipped by the JobRunner's documented missed-tick
    rule (logged as a warning), never by the coordination.
    """
    by_job = {}
    for job_id, tick, _pid in entries:
        by_job.setdefault(job_id, []).append(tick)
    assert set(by_job) == {"report", "cleanup"}
    for job_id, ticks in by_job.items():
        dups = len(ticks) - len(set(ticks))
        assert dups == 0, "%s ran twice in a tick: %s\n%s" % (job_id, ticks, server.tail())
        gaps = (max(ticks) - min(ticks) + 1) - len(ticks)
        assert gaps <= _missed(server), "%s skipped a tick: %s\n%s" % (job_id, ticks, server.tail())
    return {tick: pid for _job, tick, pid in entries}


_NO_GUNICORN = gevent_worker_unavailable()


@pytest.mark.skipif(sys.platform != "linux", reason="needs fork, flock and gunicorn's gevent worker")
@pytest.mark.skipif(_NO_GUNICORN is not None, reason=str(_NO_GUNICORN))
class TestGunicornEndToEnd:
    @pytest.mark.timeout(45)
    def test_jobs_run_once_per_tick_and_take_over_after_sigkill(self, tmp_path):
        """[MATCH] -w 3, 1 s ticks: each job once per tick; after SIGKILL of the leader the next tick runs."""
        server = Gunicorn(tmp_path)
        try:
            workers = _boot(server)
            steady = _wait_runs(server, 16)
            leader = server.leader_pid()
            assert leader in workers
            assert {int(m.group(4)) for m in steady} == {leader}
            last_tick = int(datetime.datetime.fromisoformat(steady[-1].group(3)).timestamp())
            os.kill(leader, signal.SIGKILL)
            _wait_runs(server, 6, lambda m: int(m.group(4)) != leader)
        finally:
            server.close()
        entries = server.entries()
        pids = _check_once_per_tick(entries, server)
        assert len(pids) >= 10
        after = sorted(t for t in pids if t > last_tick)
        assert after[0] - last_tick - 1 <= _missed(server), "takeover took more than one tick"
        # a survivor, or the replacement the arbiter booted meanwhile
        assert pids[after[0]] != leader
        # everything still alive at the end drained through worker_exit
        assert len([x for x in server.lines if "runtime in pid" in x and x.endswith(": stopped")]) >= 2

    @pytest.mark.timeout(45)
    def test_max_requests_recycling_hands_leadership_over(self, tmp_path):
        """[MATCH] A leader recycled by max_requests hands the lock over; jobs go on once per tick."""
        server = Gunicorn(tmp_path, "--max-requests", "2", "--max-requests-jitter", "0")
        try:
            _boot(server)
            _wait_runs(server, 2)
            leader = server.leader_pid()
            stopping = "runtime in pid %d: stopping" % leader
            server.recycle(leader)
            server.wait_for(re.escape(stopping))
            server.wait_for(r"file lock \S+ released by [^:]+:%d:" % leader)
            server.wait_for(r"runtime in pid %d: stopped" % leader)
            _wait_runs(server, 6, lambda m: int(m.group(4)) != leader)
        finally:
            server.close()
        pids = _check_once_per_tick(server.entries(), server)
        assert leader in pids.values() and len(set(pids.values())) >= 2
