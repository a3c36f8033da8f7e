"""
Chaos at the JobRunner level (issue 18, "Must show"): real processes, a real redis-server.

Every test runs ``JobRunner(leader=RedisLock(...))`` in real processes
(tests/_chaos_app.py) whose two leader-only jobs append ``<job>@<tick> <pid>
<time>`` to one shared file, then breaks something and reads the file:

- split brain: the leader is paused past its lease (SIGSTOP, or its hub
  blocked by unpatched CPU work), the other process takes over, the leader
  resumes: no (job, tick) runs twice, and the stale leader's refused attempt
  shows in its stats and events;
- SIGKILL of the leader under real ``gunicorn -k gevent -w 4`` with the
  ``child_exit`` hook, 20 times: every takeover within one tick, no double
  run, no tick lost but the one in progress at the kill;
- Redis killed mid-lease and kept down for 10 s: no double run, the outage in
  ``snapshot()["leader_error"]`` and logged once, leadership and runs back
  within one ttl.

Run with ``-s`` to see the measured figures (takeover, recovery).
"""

import datetime
import itertools
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time

import gevent
import pytest
import redis
from _gunicorn_worker import gevent_worker_unavailable, stop_arbiter
from _redis_server import REDIS_SERVER, RedisServer, free_port

from greenworks.coordination import RedisLock, _registry, release_dead

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "_chaos_app.py")
HOLDER = os.path.join(HERE, "_fence_holder.py")

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="needs /proc, SIGSTOP and gunicorn's gevent worker"),
    pytest.mark.skipif(
        REDIS_SERVER is None, reason="redis-server is not on PATH (Debian package redis-server)"
    ),
    pytest.mark.slow,
]


def now():
    return time.time()


def wait_until(predicate, limit, what):
    """Poll *predicate* until it returns something truthy (returned); fail after *limit* s.

    The conditions are other processes' progress in real time (a lease
    running out, a tick passing), which nothing here can be woken by.
    """
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "not within %ss: %s" % (limit, what)
        gevent.sleep(0.02)


def epoch(iso):
    return datetime.datetime.fromisoformat(iso).timestamp()


class Runs:
    """The shared job log: [(job, tick epoch seconds, pid, run time)]."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "runs.log")

    def read(self):
        try:
            with open(self.path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            key, pid, at = line.split()
            job_id, tick = key.split("@")
            out.append((job_id, round(epoch(tick), 3), int(pid), float(at)))
        return out

    def by(self, pid, after=0.0):
        return [r for r in self.read() if r[2] == pid and r[3] > after]

    def doubles(self):
        seen = {}
        for job_id, tick, pid, _at in self.read():
            seen.setdefault((job_id, tick), []).append(pid)
        return {key: pids for key, pids in seen.items() if len(pids) > 1}


def status(directory, pid):
    try:
        with open(os.path.join(directory, "status.%d.json" % pid)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def fresh_status(directory, pid, since):
    """The process's status file, once it was written after *since* (so it saw what came before)."""
    return wait_until(
        lambda: (s := status(directory, pid)) and s["time"] > since and s, 10, "a status of %d" % pid
    )


def state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rpartition(")")[2].split()[0]


class Runner:
    """One tests/_chaos_app.py process; its log goes to <dir>/stderr.<n>."""

    def __init__(self, url, directory, n, tick, ttl):
        self.stderr_path = os.path.join(directory, "stderr.%d" % n)
        with open(self.stderr_path, "w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, APP, url, directory, str(tick), str(ttl)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self.pid = self.proc.pid

    def wait_started(self):
        assert self.proc.stdout.readline().split() == ["started", str(self.pid)], self.log()

    def log(self):
        with open(self.stderr_path) as f:
            return f.read()

    def close(self):
        """SIGCONT, SIGTERM (it stops its runner and exits), SIGKILL if it does not."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def server(tmp_path):
    s = RedisServer(tmp_path / "redis")
    os.makedirs(s.directory)
    s.start()
    try:
        yield s
    finally:
        s.stop(kill=True)


@pytest.fixture
def world(tmp_path, server, monkeypatch):
    """Start runner processes with ``world.start(n, tick, ttl)``; all are stopped afterwards."""
    directory = str(tmp_path / "chaos")
    os.makedirs(directory)
    monkeypatch.setenv("GREENWORKS_LEASE_REGISTRY", str(tmp_path / "leases"))

    class World:
        dir = directory
        runs = Runs(directory)
        runners = []

        def start(self, n, tick, ttl):
            made = [Runner(server.url, directory, len(self.runners) + i, tick, ttl) for i in range(n)]
            self.runners.extend(made)
            for r in made:
                r.wait_started()
            return made

    w = World()
    try:
        yield w
    finally:
        for r in w.runners:
            r.close()


def leader_of(runs, pids, ticks=2):
    """The pid that ran the latest of at least *ticks* ticks (the leader now)."""
    done = runs.read()
    if len({r[1] for r in done}) < ticks:
        return None
    return done[-1][2] if done[-1][2] in pids else None


# -- 1. split brain -------------------------------------------------------------------

TICK = 0.5
TTL = 0.5


class TestSplitBrain:
    @pytest.mark.timeout(40)
    @pytest.mark.parametrize(
        "pause, refusal",
        [
            ("stop-in-is-run", "fenced"),
            ("block-in-is-run", "fenced"),
            ("sigstop", "lost"),
            ("block-in-run", "lost"),
        ],
    )
    def test_paused_leader_resumes_without_running_a_tick_twice(self, world, pause, refusal):
        """[MUST] A leader paused past its ttl (SIGSTOP, or 2x ttl of CPU work in its hub), taken
        over, resumed: no (job, tick) runs twice, and its refused attempt is counted.

        ``*-in-is-run`` pause it at the worst moment, after it renewed its
        lease and before it claims the tick: the claim is FENCED
        (``fenced_claims_total``, ``LeadershipLost(reason="fenced")``) and the
        paused tick never runs. ``sigstop`` (from outside, at any moment) and
        ``block-in-run`` (in a running job) pause it elsewhere: its next
        wake-up finds the lease gone and is refused at ``acquire``
        (``not_leader_ticks_total``, ``LeadershipLost(reason="lost")``).
        """
        a, b = world.start(2, TICK, TTL)
        runs = world.runs
        leader = wait_until(lambda: leader_of(runs, {a.pid, b.pid}), 15, "a leader running ticks")
        follower = b.pid if leader == a.pid else a.pid
        before = status(world.dir, leader)["stats"]
        assert before["fenced_claims_total"] == 0
        blocked_for = 2 * TTL
        if pause == "sigstop":
            os.kill(leader, signal.SIGSTOP)
        else:
            with open(os.path.join(world.dir, "ctl.%d" % leader, pause), "w") as f:
                f.write(str(blocked_for))
        if pause.startswith("stop") or pause == "sigstop":
            wait_until(lambda: state(leader) == "T", 10, "the leader stopped")
        paused_at = now()
        # The follower takes over only once the paused leader's lease ran out.
        wait_until(lambda: len({r[1] for r in runs.by(follower, paused_at)}) >= 2, 15, "a takeover")
        if pause in ("stop-in-is-run", "sigstop"):
            os.kill(leader, signal.SIGCONT)
        else:
            open(os.path.join(world.dir, "go"), "w").close()
        resumed = now()
        kind, paused_tick = ("sigstop", None) if pause == "sigstop" else _paused(world.dir, leader)
        assert kind == pause
        seen = wait_until(
            lambda: (
                (s := fresh_status(world.dir, leader, resumed))
                and any(e[0] == "lost" and e[2] > paused_at for e in s["events"])
                and s
            ),
            15,
            "the resumed leader noticing it lost the lease",
        )
        # Let the follower run two more ticks: a stale run would show by then.
        last = runs.by(follower)[-1][1]
        wait_until(lambda: runs.by(follower)[-1][1] >= last + 2 * TICK, 10, "two more ticks")
        stats = fresh_status(world.dir, leader, now())["stats"]
        assert runs.doubles() == {}
        reasons = [e[1] for e in seen["events"] if e[0] == "lost" and e[2] > paused_at]
        assert not seen["snapshot"]["is_leader"]
        if refusal == "fenced":
            # Both of that wake-up's claims (a, then b) refused; that tick never ran anywhere.
            assert reasons[0] == "fenced"
            assert stats["fenced_claims_total"] == 2
            assert [r for r in runs.read() if r[1] == paused_tick] == []
        else:
            assert reasons[0] in ("lost", "fenced")  # an outside SIGSTOP may land in the window too
            assert stats["not_leader_ticks_total"] > before["not_leader_ticks_total"]
        # From the takeover on, only the follower ran ticks.
        took_over = min(r[1] for r in runs.by(follower, paused_at))
        assert [r for r in runs.read() if r[2] == leader and r[1] >= took_over] == []
        print(
            "\n%s: follower took over, stale leader refused (%s), fenced_claims_total=%d"
            % (pause, reasons[0], stats["fenced_claims_total"])
        )


def _paused(directory, pid):
    with open(os.path.join(directory, "paused.%d" % pid)) as f:
        kind, at = f.read().split()
    return kind, round(epoch(at), 3)


# -- 2. SIGKILL of the leader under real gunicorn -w 4 ---------------------------------

_NO_GUNICORN = gevent_worker_unavailable()
KILLS = 20


def _has_setting(name):
    from gunicorn.config import KNOWN_SETTINGS

    return any(s.name == name for s in KNOWN_SETTINGS)


class Gunicorn:
    """``gunicorn -k gevent -w 4`` running tests/_chaos_app.py; its log goes to <dir>/gunicorn.log."""

    def __init__(self, url, directory, registry, tick, ttl):
        self.log_path = os.path.join(directory, "gunicorn.log")
        env = dict(
            os.environ,
            CHAOS_REDIS=url,
            CHAOS_DIR=directory,
            CHAOS_TICK=str(tick),
            CHAOS_TTL=str(ttl),
            CHAOS_BIND="127.0.0.1:%d" % free_port(),
            GREENWORKS_LEASE_REGISTRY=registry,
        )
        args = [sys.executable, "-m", "gunicorn", "-c", "_chaos_gunicorn_conf.py"]
        if _has_setting("control_socket_disable"):
            args.append("--no-control-socket")  # gunicorn >= 24 would share ~/.gunicorn/gunicorn.ctl
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [*args, "_chaos_app:application"],
                cwd=HERE,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )

    def lines(self):
        with open(self.log_path) as f:
            return f.read().splitlines()

    def missed(self):
        """Ticks the runners reported missed (a hub busy past a boundary on this loaded machine)."""
        found = (re.search(r"missed (\d+) tick", line) for line in self.lines())
        return sum(int(m.group(1)) for m in found if m)

    def close(self):
        """SIGTERM the arbiter (a graceful stop), then SIGKILL whatever of its group is left."""
        stop_arbiter(self.proc)


@pytest.mark.skipif(_NO_GUNICORN is not None, reason=str(_NO_GUNICORN))
class TestGunicornSigkill:
    @pytest.mark.timeout(90)
    def test_leader_sigkilled_20_times_is_taken_over_within_one_tick(self, tmp_path, server):
        """[MUST] gunicorn -k gevent -w 4, RedisLock, child_exit: SIGKILL the leader 20 times at a
        random moment of its tick; every time another worker runs the first tick after the kill,
        no (job, tick) runs twice, and no tick is lost but the one in progress at a kill."""
        tick = 0.5
        directory = str(tmp_path / "chaos")
        os.makedirs(directory)
        runs = Runs(directory)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        g = Gunicorn(server.url, directory, str(tmp_path / "leases"), tick, tick)
        rng = random.Random(18)
        kills = []  # (pid, kill time, first tick of the new leader, its run time)
        try:
            wait_until(lambda: len({r[1] for r in runs.read()}) >= 3, 30, "gunicorn running ticks")
            for _ in range(KILLS):
                # Every other kill lands at a random moment of a tick, the others 1-10 ms before a
                # boundary: the master's child_exit then frees the lease while the followers are
                # taking it over (between their reading the dead holder and their compare-and-set).
                if len(kills) % 2:
                    gevent.sleep(rng.uniform(0, tick))
                else:
                    boundary = (now() // tick + 2) * tick
                    gevent.sleep(boundary - rng.uniform(0.001, 0.01) - now())
                holder = wait_until(lambda: client.get("leader"), 10, "a leader")
                pid = int(holder.split(":")[-2])
                os.kill(pid, signal.SIGKILL)
                killed_at = now()
                first = wait_until(
                    lambda pid=pid, killed_at=killed_at: [
                        r for r in runs.read() if r[2] != pid and r[3] > killed_at
                    ],
                    10,
                    "a takeover",
                )[0]
                kills.append((pid, killed_at, first[1], first[3]))
        finally:
            client.close()
            g.close()
        missed = g.missed()
        latencies = sorted(at - killed for _pid, killed, _tick, at in kills)
        print(
            "\ntakeover after SIGKILL over %d kills (tick %.1fs): min %.3fs median %.3fs max %.3fs;"
            " runner-reported missed ticks: %d"
            % (len(kills), tick, latencies[0], statistics.median(latencies), latencies[-1], missed)
        )
        after_boundary = sorted(at - first for _pid, _killed, first, at in kills)
        print(
            "new leader's first run after its tick's boundary: min %.3fs median %.3fs max %.3fs"
            % (after_boundary[0], statistics.median(after_boundary), after_boundary[-1])
        )
        for pid, killed, first, at in kills:
            print(
                "  kill %d at tick phase %.3fs: first run of the new leader %.3fs later (tick %+.3fs)"
                % (pid, killed % tick, at - killed, first - killed)
            )
        assert runs.doubles() == {}
        # Within one tick: the new leader ran the first tick that began after the kill, the edge
        # kills (in the last 11 ms before a boundary) too: there the master's child_exit frees the
        # lease while the followers are inside acquire(), which then takes the freed lease.
        late = [(pid, killed, first) for pid, killed, first, _at in kills if first > killed + tick + 0.001]
        edge = [(pid, killed, first) for pid, killed, first, _at in kills if (-killed) % tick <= 0.011]
        print("edge kills: %d, taken over late: %d" % (len(edge), len(set(edge) & set(late))))
        assert len(late) <= missed, "takeovers later than one tick: %s" % late
        # No tick lost but the one in progress at each kill (or one a runner reported missed).
        in_progress = {round((killed // tick) * tick, 3) for _pid, killed, _first, _at in kills}
        for job_id in ("a", "b"):
            ticks = {t for j, t, _pid, _at in runs.read() if j == job_id}
            span = [
                round(min(ticks) + i * tick, 3) for i in range(round((max(ticks) - min(ticks)) / tick) + 1)
            ]
            lost = [t for t in span if t not in ticks and t not in in_progress]
            assert len(lost) <= missed, "%s lost ticks %s" % (job_id, lost)


# -- 3. Redis down for 10 s mid-lease ------------------------------------------------

OUTAGE = 10.0


class TestRedisOutage:
    @pytest.mark.timeout(60)
    def test_redis_down_10s_mid_lease(self, world, server):
        """[MUST] Redis killed mid-lease and kept down 10 s under two runners: nobody runs a tick
        meanwhile, both show ``leader_error`` in snapshot() while it is down and log it once (not per
        tick), and once Redis is back (empty) leadership and runs are back within one ttl."""
        tick = ttl = 0.5  # JobRunner's default leader_ttl is one tick
        runners = world.start(2, tick, ttl)
        pids = [r.pid for r in runners]
        runs = world.runs
        wait_until(lambda: leader_of(runs, set(pids), ticks=3), 15, "a leader running ticks")
        before = {pid: status(world.dir, pid)["stats"] for pid in pids}
        server.stop(kill=True)
        down = now()
        # Visible while down: both say so within ERROR_TICKS (3) ticks, and still do at the end.
        for pid in pids:
            wait_until(
                lambda pid=pid: (
                    (s := status(world.dir, pid))
                    and s["time"] > down
                    and s["snapshot"]["leader_error"]
                    and not s["snapshot"]["is_leader"]
                ),
                5 * tick + 5,
                "leader_error in the snapshot of %d" % pid,
            )
        gevent.sleep(max(0.0, down + OUTAGE - now()))  # the outage is the subject: 10 s of real time
        during = {pid: fresh_status(world.dir, pid, down + OUTAGE - 0.5) for pid in pids}
        restarting = now()
        server.start()
        up = now()
        first = wait_until(lambda: [r for r in runs.read() if r[3] > up], 10, "a run after the outage")[0]
        # Each clears its error at its first wake-up that reaches Redis again.
        back = {
            pid: wait_until(
                lambda pid=pid: (
                    (s := status(world.dir, pid))
                    and s["time"] > up
                    and s["snapshot"]["leader_error"] is None
                    and s
                ),
                5,
                "leader_error cleared in %d" % pid,
            )
            for pid in pids
        }
        last = runs.read()[-1][1]
        wait_until(lambda: runs.read()[-1][1] >= last + 2 * tick, 10, "two more ticks")
        for r in runners:
            r.close()
        logs = {r.pid: r.log() for r in runners}
        print(
            "\nRedis down %.1fs: first run %.3fs after it was back (tick %.1fs, ttl %.1fs), tick %.3fs after"
            % (up - down, first[3] - up, tick, ttl, first[1] - up)
        )
        assert runs.doubles() == {}
        # No tick that began once Redis was dead ran while it was down, and none of the outage ran
        # later: only the one whose wake-up was reaching Redis as it came back may have (claimed
        # then, once). A tick claimed just before the kill may start a few ms after it: that tick
        # began before `down` (measured when the server had exited), so it is not counted here.
        assert [r for r in runs.read() if r[1] > down and r[3] < restarting] == []
        assert [r for r in runs.read() if down <= r[1] < restarting - tick] == []
        assert first[1] - up <= ttl  # leadership and runs back within one ttl
        for pid in pids:
            snapshot, stats = during[pid]["snapshot"], during[pid]["stats"]
            assert snapshot["leader_error"] and "Connection" in snapshot["leader_error"]
            assert not snapshot["is_leader"]
            # The outage's ticks were counted as ticks without a leader (nothing runs them later).
            missed = stats["not_leader_ticks_total"] - before[pid]["not_leader_ticks_total"]
            assert missed >= (OUTAGE - 1) / tick - 2
            # Logged once, not per tick: one ERROR, and a handful of warnings for a 20-tick outage.
            log = logs[pid]
            assert log.count("failed on 3 ticks in a row") == 1, log
            loud = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
            assert len(loud) <= 6, "\n".join(loud)
            assert log.count("failed (ConnectionError") == 1, log  # the lock's own warning
            assert _logged_tracebacks(log) <= 2, log
        assert any(e[0] == "acquired" and e[2] > up for pid in pids for e in back[pid]["events"])


def _logged_tracebacks(log):
    """How many log records carried a traceback (a chained one prints several headers)."""
    lines = log.splitlines()
    return sum(
        1
        for before, line in itertools.pairwise(lines)
        if line.startswith("Traceback") and re.match(r"\d{4}-", before)
    )


# -- the dead local holder's lease, taken over at once ---------------------------------


@pytest.fixture
def registry(tmp_path, monkeypatch):
    path = tmp_path / "leases"
    monkeypatch.setenv("GREENWORKS_LEASE_REGISTRY", str(path))
    return path


def holder(server, ttl=60, zombie=False):
    """A child process holding the lease ``leader``; returns (proc, holder pid, token, holder id).

    With *zombie* the holder is started by a ``sleep`` that never reaps it
    (this process's gevent reaps its own children at once), so once killed
    it stays a zombie.
    """
    args = [sys.executable, HOLDER, "redis", server.url, "leader", str(ttl)]
    if zombie:
        args = ["sh", "-c", '"$@" & exec sleep 30', "sh", *args]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    state, token, holder_id = proc.stdout.readline().split()
    assert state == "held"
    return proc, int(holder_id.split(":")[-2]), int(token), holder_id


def finish(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()


class TestDeadHolderTakeover:
    @pytest.mark.timeout(30)
    @pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
    def test_a_killed_holders_lease_is_taken_over_at_once(self, server, registry, reaped, caplog):
        """acquire() takes a SIGKILLed holder's 60 s lease at once (no child_exit needed), with a new,
        larger token, whether or not its parent reaped it yet."""
        proc, pid, token, dead = holder(server, zombie=not reaped)
        lock = RedisLock(server.url, "leader", ttl=5)
        try:
            os.kill(pid, signal.SIGKILL)
            if reaped:
                proc.wait()
            else:
                wait_until(lambda: state(pid) == "Z", 10, "a zombie")
            with caplog.at_level("INFO", logger="greenworks.coordination._redis"):
                assert lock.acquire()
            assert lock.token > token
            assert "taken over by %s (token %d) from %s" % (lock.holder, lock.token, dead) in caplog.text
        finally:
            lock.release()
            finish(proc)

    @pytest.mark.timeout(30)
    @pytest.mark.parametrize("moment", ["before-the-check", "before-the-take-over"])
    def test_a_lease_released_by_child_exit_meanwhile_is_acquired(self, server, registry, moment):
        """The gunicorn master's ``release_dead`` (child_exit) frees the dead holder's lease while a
        contender's acquire() is between reading the holder and taking over: acquire() still gets
        the lease, in that same call, with a new, larger token.

        The race the gunicorn SIGKILL test showed at tick boundaries (the master reaps the killed
        leader while every follower is inside acquire): ``before-the-check`` (release_dead deleted
        the key and unlinked the entry after the acquire script read the holder: one more plain
        acquire finds the key free), ``before-the-take-over`` (it did so after the check: the
        take-over script finds the key gone, which is a free lease too).
        """
        proc, pid, token, _dead = holder(server)
        lock = RedisLock(server.url, "leader", ttl=5)
        released = []

        def free():
            if not released:  # once: the master runs child_exit once per dead worker
                released.append(release_dead(pid))

        if moment == "before-the-check":
            script = lock._acquire_script

            def racing(**kw):
                answer = script(**kw)  # the dead holder's id, on its way back to us...
                free()  # ...as the master deletes the key and unlinks the entry
                return answer

            lock._acquire_script = racing
        else:
            script = lock._take_over_script

            def racing(**kw):
                free()
                return script(**kw)

            lock._take_over_script = racing
        try:
            proc.kill()
            proc.wait()
            assert lock.acquire()
            assert released == [1]
            assert lock.token > token
        finally:
            lock.release()
            finish(proc)

    @pytest.mark.timeout(30)
    def test_a_live_holder_is_never_taken_over(self, server, registry):
        """A SIGSTOPped holder (alive, its lease not expired) keeps its lease."""
        proc, _pid, _token, live = holder(server)
        lock = RedisLock(server.url, "leader", ttl=5)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            os.kill(proc.pid, signal.SIGSTOP)
            assert not lock.acquire()
            assert client.get("leader") == live
        finally:
            client.close()
            lock.release()
            finish(proc)

    @pytest.mark.timeout(30)
    def test_a_holder_without_a_registry_entry_is_not_taken_over(self, server, registry):
        """Only a holder whose registry entry is on this host counts: without it the lease expires by ttl.

        A dead local holder without its entry is asked about once more (release_dead unlinks the
        entry once it freed the lease, so the key is likely free by then), once per holder id: one
        more round trip in all, not one per tick.
        """
        proc, _pid, _token, dead = holder(server)
        lock = RedisLock(server.url, "leader", ttl=5)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        script = lock._acquire_script
        calls = []

        def counted(**kw):
            calls.append(kw)
            return script(**kw)

        lock._acquire_script = counted
        try:
            proc.kill()
            proc.wait()
            for name in os.listdir(registry):
                os.unlink(registry / name)
            assert not lock.acquire()
            assert len(calls) == 2
            assert not lock.acquire()
            assert len(calls) == 3
            assert client.get("leader") == dead
        finally:
            client.close()
            lock.release()
            finish(proc)

    def test_pid_gone_reads_sigkill_pending_and_exiting(self, tmp_path, monkeypatch):
        """pid_gone() counts a process with SIGKILL pending, or exiting, as gone (fake /proc files:
        a real process is in these states for microseconds)."""
        pid = os.getpid()
        proc = tmp_path / str(pid)
        proc.mkdir()
        monkeypatch.setattr(_registry, "_PROC", str(tmp_path))

        def fake(state="R", flags=0x400000, sigpnd=0, shdpnd=0):
            (proc / "stat").write_text("%d (py thon) %s 1 1 1 0 -1 %d 0 0\n" % (pid, state, flags))
            (proc / "status").write_text("Name:\tpy\nSigPnd:\t%016x\nShdPnd:\t%016x\n" % (sigpnd, shdpnd))

        fake()
        assert not _registry.pid_gone(pid)
        fake(shdpnd=1 << 8)
        assert _registry.pid_gone(pid)
        fake(sigpnd=1 << 8)
        assert _registry.pid_gone(pid)
        fake(shdpnd=1 << 14)  # SIGTERM pending: it may still run a handler
        assert not _registry.pid_gone(pid)
        fake(flags=0x400004)  # PF_EXITING
        assert _registry.pid_gone(pid)
        fake(state="Z")
        assert _registry.pid_gone(pid)
