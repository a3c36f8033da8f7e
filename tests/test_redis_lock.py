"""Tests for greenworks.coordination.RedisLock against a real redis-server."""

import json
import logging
import os
import signal
import subprocess
import sys
import types

import gevent
import pytest
import redis
from _redis_server import redis_server  # noqa: F401 - the fixture
from gevent.queue import Queue
from zope.interface.verify import verifyClass, verifyObject

import greenworks.gunicorn
from greenworks import _greenlets
from greenworks.coordination import ClaimResult, RedisLock, release_dead
from greenworks.coordination._registry import ENV
from greenworks.exceptions import InvalidArgument
from greenworks.interfaces import ILeaderLock
from greenworks.jobs import JobRunner, job

HOLDER = os.path.join(os.path.dirname(__file__), "_lock_holder.py")


@pytest.fixture(autouse=True)
def registry(tmp_path, monkeypatch):
    """A lease registry of this test's own, inherited by the child processes."""
    path = tmp_path / "leases"
    monkeypatch.setenv(ENV, str(path))
    return path


def start_holder(*args):
    return subprocess.Popen(
        [sys.executable, HOLDER, *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def finish(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()


@pytest.fixture
def client(redis_server):  # noqa: F811
    c = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def locks(redis_server):  # noqa: F811
    """Make RedisLocks on the test server; every one is released after the test."""
    made = []

    def make(name="leader", ttl=1.0, **kw):
        lock = RedisLock(redis_server.url, name, ttl=ttl, **kw)
        made.append(lock)
        return lock

    try:
        yield make
    finally:
        for lock in made:
            lock.release()


class TestInterfaces:
    def test_redis_lock_provides_ileaderlock(self, locks):
        """RedisLock implements and provides ILeaderLock (attributes included)."""
        assert verifyClass(ILeaderLock, RedisLock)
        assert verifyObject(ILeaderLock, locks())


class TestLease:
    def test_exclusive(self, locks, client):
        """[MATCH] SET NX PX: one holder at a time; the key holds its token with the ttl."""
        a, b = locks(ttl=5), locks(ttl=5)
        assert a.acquire() and a.is_held
        assert not b.acquire() and not b.is_held
        assert client.get("leader") == a.holder
        assert 4000 < client.pttl("leader") <= 5000
        a.release()
        assert client.get("leader") is None and not a.is_held
        assert b.acquire() and client.get("leader") == b.holder

    def test_acquire_when_held_renews(self, locks, client):
        """acquire() by the holder extends its lease instead of failing."""
        a = locks(ttl=5)
        assert a.acquire(1)
        assert client.pttl("leader") <= 1000
        assert a.acquire(5)
        assert client.pttl("leader") > 1000

    def test_renewal_greenlet_keeps_the_lease(self, locks, client):
        """The named renewal greenlet keeps the lease past several ttls, and stops on release()."""
        a, b = locks(ttl=0.3), locks(ttl=0.3)
        assert a.acquire()
        names = [g.name for g in _greenlets.alive()]
        assert names == ["greenworks.coordination.redis[leader]"]
        gevent.sleep(1.0)  # real time is the subject: three ttls pass
        assert a.is_held and client.get("leader") == a.holder
        assert not b.acquire()
        a.release()
        assert _greenlets.alive() == []

    def test_lease_expires_without_renewal(self, locks, client):
        """[MATCH] Without renewal the lease expires after its ttl and another holder takes it."""
        a, b = locks(ttl=0.3, renew_interval=60), locks(ttl=0.3)
        assert a.acquire()
        gevent.sleep(0.35)  # real time is the subject: the ttl passes
        assert client.get("leader") is None
        assert b.acquire()
        assert not a.renew() and not a.is_held

    def test_is_held_expires_locally(self, locks, clock):
        """is_held turns False once ttl passed on the clock without a confirmed renewal."""
        a = locks(ttl=10, renew_interval=60, clock=clock)
        assert a.acquire()
        clock.advance(9.9)
        assert a.is_held
        clock.advance(0.1)
        assert not a.is_held

    def test_token_safety(self, locks, client):
        """[MATCH] renew() and release() of an expired holder never touch the new holder's key."""
        a, b = locks(ttl=5, renew_interval=60), locks(ttl=5, renew_interval=60)
        assert a.acquire()
        client.delete("leader")  # a's lease expires
        assert b.acquire()
        client.pexpire("leader", 3000)
        assert not a.renew()
        assert client.pttl("leader") <= 3000
        a.release()
        assert client.get("leader") == b.holder
        assert b.renew() and client.pttl("leader") > 3000

    def test_takeover_after_holder_is_sigkilled(self, locks, redis_server, client, registry):  # noqa: F811
        """[MATCH] A holder process killed with SIGKILL is replaced within one ttl (at once when its
        registry entry is on this host: tests/test_leadership_chaos.py TestDeadHolderTakeover)."""
        proc = subprocess.Popen(
            [sys.executable, HOLDER, "redis", redis_server.url, "leader", "1.0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            state, holder = proc.stdout.readline().split()
            assert state == "held" and client.get("leader") == holder
            lock = locks(ttl=1.0)
            assert not lock.acquire()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            for name in os.listdir(registry):  # a holder of another host: nothing says it died
                os.unlink(registry / name)
            left = client.pttl("leader") / 1000.0
            assert 0 < left <= 1.0
            assert not lock.acquire()
            gevent.sleep(left + 0.05)  # real time is the subject: the dead holder's ttl
            assert lock.acquire()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdin.close()
            proc.stdout.close()

    def test_redis_restart_loses_the_lease(self, locks, redis_server, client):  # noqa: F811
        """[MATCH] Redis restarted empty mid-lease: renew() fails, then a new holder can lead."""
        a, b = locks(ttl=5, renew_interval=60), locks(ttl=5, renew_interval=60)
        assert a.acquire()
        redis_server.restart()
        assert not a.renew() and not a.is_held
        assert b.acquire()
        assert not a.acquire()

    def test_server_down_reads_as_not_held_and_is_logged_once(self, locks, redis_server, caplog):  # noqa: F811
        """With Redis down every call reads as not held / FAILED, one WARNING in all, last_error set."""
        a = locks(ttl=5, renew_interval=60)
        assert a.acquire()
        redis_server.stop(kill=True)
        with caplog.at_level(logging.DEBUG, logger="greenworks.coordination._redis"):
            assert not a.renew()
            for _ in range(3):
                assert not a.acquire()
                assert a.claim("k", 1) is ClaimResult.FAILED
            a.release()
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "renew failed" in warnings[0].getMessage()
        assert warnings[0].exc_info is not None  # one traceback per outage
        assert isinstance(a.last_error, redis.ConnectionError)

    def test_recovery_is_logged_once_and_clears_last_error(self, locks, redis_server, caplog):  # noqa: F811
        """The first success after an outage logs 'reachable again' once and clears last_error."""
        a = locks(ttl=5, renew_interval=60)
        redis_server.stop(kill=True)
        assert not a.acquire() and a.last_error is not None
        redis_server.start()
        with caplog.at_level(logging.WARNING, logger="greenworks.coordination._redis"):
            assert a.acquire()
            assert a.claim("k", 5)
        recovered = [r.getMessage() for r in caplog.records if "reachable again" in r.getMessage()]
        assert len(recovered) == 1 and "after 1 failed call(s)" in recovered[0]
        assert a.last_error is None

    def test_accepts_a_client(self, redis_server):  # noqa: F811
        """A ready redis.Redis client can be passed instead of a URL."""
        c = redis.Redis.from_url(redis_server.url)
        lock = RedisLock(c, "leader")
        try:
            assert lock.acquire() and c.get("leader") == lock.holder.encode()
        finally:
            lock.release()
            c.close()

    @pytest.mark.parametrize(
        "args, match",
        [
            ((42, "n"), "client_or_url must be"),
            (("redis://127.0.0.1:1", ""), "name must be"),
            (("redis://127.0.0.1:1", "n", 0), "ttl must be"),
        ],
    )
    def test_bad_arguments_are_rejected(self, args, match):
        """Bad construction arguments raise InvalidArgument naming them."""
        with pytest.raises(InvalidArgument, match=match):
            RedisLock(*args)

    def test_missing_redis_py_gives_a_clear_error(self, monkeypatch):
        """Without redis-py installed, building a RedisLock says which extra to install."""
        monkeypatch.setitem(sys.modules, "redis", None)
        with pytest.raises(ImportError, match=r"pip install 'greenworks\[redis\]'"):
            RedisLock("redis://127.0.0.1:1", "n")

    def test_bad_renew_interval_is_rejected(self):
        """A renew_interval that is not > 0 raises InvalidArgument naming it."""
        with pytest.raises(InvalidArgument, match="renew_interval must be"):
            RedisLock("redis://127.0.0.1:1", "n", renew_interval=0)


class TestClaims:
    def test_claim_once_per_key(self, locks, client):
        """[MATCH] claim() is SET <name>:claim:<key> NX PX: True once per key across holders."""
        a, b = locks(), locks()
        assert a.claim("job@t1", 5)
        assert not b.claim("job@t1", 5)
        assert b.claim("job@t2", 5)
        assert client.get("leader:claim:job@t1") == a.holder
        assert 4000 < client.pttl("leader:claim:job@t1") <= 5000

    def test_claim_expires(self, locks):
        """A claim can be taken again once its ttl passed."""
        a = locks()
        assert a.claim("k", 0.2)
        gevent.sleep(0.25)  # real time is the subject: the claim's ttl
        assert a.claim("k", 0.2)


class TestJobRunnerOverRedis:
    @pytest.mark.timeout(30)
    def test_redis_restart_mid_lease_no_double_run_and_jobs_resume(self, locks, redis_server):  # noqa: F811
        """[MATCH] Two runners, one Redis lease: across a Redis restart no tick runs twice; ticks resume."""
        runs = Queue()

        def make(name):
            def record():
                runs.put((name, record.at))

            def due(now):
                record.at = now
                return True

            return job("report", record, due)

        runners = [
            JobRunner(tick=0.5, leader=locks(ttl=1.0), leader_ttl=1.0, name="r%d" % i) for i in range(2)
        ]
        try:
            for i, r in enumerate(runners):
                r.set_jobs([make("r%d" % i)])
            before = [runs.get(timeout=5) for _ in range(3)]
            redis_server.restart()
            after = [runs.get(timeout=5) for _ in range(4)]
        finally:
            for r in runners:
                r.stop_and_wait(timeout=5)
        late = [runs.get() for _ in range(runs.qsize())]
        ticks = [at for _, at in before + after + late]
        assert len(set(ticks)) == len(ticks), ticks
        assert ticks == sorted(ticks)


class TestReleaseDead:
    @pytest.mark.timeout(30)
    def test_frees_a_killed_holders_lease_at_once(self, locks, redis_server, client, registry):  # noqa: F811
        """[MUST] release_dead(pid) of a SIGKILLed holder deletes its lease now, long before its ttl."""
        proc = start_holder("redis", redis_server.url, "leader", 60)
        try:
            state, holder = proc.stdout.readline().split()
            assert state == "held" and len(os.listdir(registry)) == 1
            proc.kill()
            proc.wait()
            fence = client.get("leader:fence")
            assert client.get("leader") == holder
            assert release_dead(proc.pid) == 1
        finally:
            finish(proc)
        assert client.get("leader") is None
        assert client.get("leader:fence") == fence  # releasing moves no fencing counter
        assert os.listdir(registry) == []
        assert locks().acquire()

    @pytest.mark.timeout(30)
    def test_gunicorn_child_exit_hook_frees_the_lease(self, locks, redis_server, client, registry):  # noqa: F811
        """[issue 18] gunicorn's child_exit(server, worker) frees a SIGKILLed worker's lease at once."""
        proc = start_holder("redis", redis_server.url, "leader", 60)
        try:
            state, holder = proc.stdout.readline().split()
            assert state == "held"
            proc.kill()
            proc.wait()
            assert client.get("leader") == holder
            greenworks.gunicorn.child_exit(None, types.SimpleNamespace(pid=proc.pid))
        finally:
            finish(proc)
        assert client.get("leader") is None
        assert locks().acquire()

    def test_refuses_while_the_process_is_alive(self, locks, client, caplog):
        """release_dead() of a live pid releases nothing and says why."""
        a = locks(ttl=30)
        assert a.acquire()
        with caplog.at_level(logging.WARNING, logger="greenworks.coordination._registry"):
            assert release_dead(os.getpid()) == 0
        assert client.get("leader") == a.holder
        assert "that process is alive" in caplog.text

    @pytest.mark.timeout(30)
    def test_never_deletes_a_newer_holders_lease(self, locks, redis_server, client):  # noqa: F811
        """A dead holder's entry names its own id: a lease taken over since is left alone."""
        proc = start_holder("redis", redis_server.url, "leader", 60)
        try:
            assert proc.stdout.readline().split()[0] == "held"
            proc.kill()
            proc.wait()
            client.delete("leader")  # the dead holder's lease expired...
            b = locks(ttl=30)
            assert b.acquire()  # ...and a live process took over
            assert release_dead(proc.pid) == 0
        finally:
            finish(proc)
        assert client.get("leader") == b.holder and b.renew()

    @pytest.mark.timeout(30)
    def test_unreachable_redis_is_logged_not_raised(self, redis_server, registry, caplog):  # noqa: F811
        """With the entry's Redis down, release_dead() returns 0 with a warning and drops the entry."""
        proc = start_holder("redis", redis_server.url, "leader", 60)
        try:
            assert proc.stdout.readline().split()[0] == "held"
            proc.kill()
            proc.wait()
            redis_server.stop(kill=True)
            with caplog.at_level(logging.WARNING, logger="greenworks.coordination._registry"):
                assert release_dead(proc.pid, timeout=0.5) == 0
        finally:
            finish(proc)
        assert "not released" in caplog.text and os.listdir(registry) == []

    def test_entry_is_written_at_acquire_and_removed_at_release(self, locks, registry):
        """acquire() writes one private JSON entry naming key and holder; release() removes it."""
        a = locks(ttl=30)
        assert a.acquire()
        (name,) = os.listdir(registry)
        path = registry / name
        assert name.startswith("%d." % os.getpid()) and (path.stat().st_mode & 0o777) == 0o600
        entry = json.loads(path.read_text())
        assert (entry["kind"], entry["key"], entry["holder"]) == ("lock", "leader", a.holder)
        a.release()
        assert os.listdir(registry) == []

    def test_no_entry_without_a_registry(self, redis_server, registry):  # noqa: F811
        """lease_registry=False writes nothing."""
        lock = RedisLock(redis_server.url, "leader", lease_registry=False)
        try:
            assert lock.acquire()
            assert not registry.exists()
        finally:
            lock.release()

    def test_bad_arguments_are_rejected(self):
        """A bad pid, timeout or lease_registry raises InvalidArgument naming it."""
        with pytest.raises(InvalidArgument, match="pid must be"):
            release_dead(0)
        with pytest.raises(InvalidArgument, match="timeout must be"):
            release_dead(12345, timeout=float("nan"))
        with pytest.raises(InvalidArgument, match="lease_registry must be"):
            RedisLock("redis://127.0.0.1:1", "n", lease_registry=42)
