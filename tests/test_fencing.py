"""
Fencing tokens and fenced claims, for all three locks; split brain with real processes.

The split-brain tests run a leader in a child process (tests/_fence_holder.py),
pause it past its lease (SIGSTOP, or a hub blocked by CPU work), let another
holder take over and claim, then resume it: every key is claimed once, and
the resumed leader's attempts come back ``FENCED``. Each takes about 1-3 s.
"""

import os
import signal
import subprocess
import sys

import gevent
import pytest
import redis
from _redis_server import redis_server  # noqa: F401 - the fixture
from zope.interface.verify import verifyClass, verifyObject

from greenworks.coordination import ClaimResult, FileLock, LocalLock, RedisLock
from greenworks.interfaces import IFencedLock, ILeaderLock
from greenworks.testing import FakeClock

HOLDER = os.path.join(os.path.dirname(__file__), "_fence_holder.py")


class Contenders:
    """Two instances of one kind of lock, and a way to end the first one's lease behind its back."""

    def __init__(self, kind, tmp_path, server):
        self.kind = kind
        self.made = []
        if kind == "local":
            self.clock = FakeClock()
            self.base = LocalLock(ttl=5, clock=self.clock)
        elif kind == "file":
            self.path = tmp_path / "lock"
        else:
            self.url = server.url
            self.client = redis.Redis.from_url(server.url, decode_responses=True)

    def new(self):
        if self.kind == "local":
            lock = self.base if not self.made else self.base.peer()
        elif self.kind == "file":
            lock = FileLock(self.path)
        else:
            lock = RedisLock(self.url, "leader", ttl=5, renew_interval=60)
        self.made.append(lock)
        return lock

    def expire_behind_its_back(self):
        """End the current lease without its holder knowing (expiry, a replaced lock file)."""
        if self.kind == "local":
            self.clock.advance(5)
        elif self.kind == "file":
            os.unlink(self.path)
        else:
            self.client.delete("leader")

    def lose_counter(self):
        """Lose the fence counter (a deleted file, Redis without its data)."""
        if self.kind == "file":
            os.unlink(str(self.path) + ".fence")
        elif self.kind == "redis":
            self.client.delete("leader:fence")

    def close(self):
        for lock in self.made:
            lock.release()
        if self.kind == "redis":
            self.client.close()


@pytest.fixture(params=["local", "file", "redis"])
def contenders(request, tmp_path):
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    made = Contenders(request.param, tmp_path, server)
    try:
        yield made
    finally:
        made.close()


class TestInterfaces:
    @pytest.mark.parametrize("cls", [LocalLock, FileLock, RedisLock])
    def test_locks_implement_ifencedlock(self, cls):
        """Every greenworks lock implements IFencedLock, and still ILeaderLock."""
        assert verifyClass(IFencedLock, cls)
        assert verifyClass(ILeaderLock, cls)

    def test_instances_provide_ifencedlock(self, contenders):
        """Instances provide IFencedLock, token and last_error included."""
        assert verifyObject(IFencedLock, contenders.new())


class TestTokens:
    def test_token_is_none_until_acquired_and_after_release(self, contenders):
        """token is an int only while the lease is held; a renewal keeps it."""
        a = contenders.new()
        assert a.token is None
        assert a.acquire()
        token = a.token
        assert isinstance(token, int) and token > 0
        assert a.acquire() and a.renew() and a.token == token
        a.release()
        assert a.token is None

    def test_tokens_strictly_increase_across_holders(self, contenders):
        """Every acquisition, by any instance, gets a greater token than all before it."""
        a, b = contenders.new(), contenders.new()
        seen = []
        for lock in (a, b, a, b):
            assert lock.acquire()
            seen.append(lock.token)
            lock.release()
        assert seen == sorted(seen) and len(set(seen)) == 4

    def test_a_lost_counter_starts_above_every_earlier_token(self, contenders):
        """A counter that vanished starts again from the clock, above the tokens handed out before."""
        if contenders.kind == "local":
            pytest.skip("the LocalLock counter lives in memory and cannot be lost")
        a, b = contenders.new(), contenders.new()
        assert a.acquire()
        before = a.token
        a.release()
        contenders.lose_counter()
        assert b.acquire() and b.token > before


class TestFencedClaims:
    def test_stale_holder_is_refused_after_a_new_holder_claimed(self, contenders):
        """A holder whose lease ended behind its back gets FENCED, never TAKEN or CLAIMED, and drops it."""
        a, b = contenders.new(), contenders.new()
        assert a.acquire()
        old = a.token
        contenders.expire_behind_its_back()
        assert b.acquire() and b.token > old
        assert b.claim("job@1", 60) is ClaimResult.CLAIMED
        assert a.claim("job@1", 60) is ClaimResult.FENCED
        # Even a key nobody claimed yet: the stale leader must not run the new leader's ticks.
        assert a.claim("job@2", 60) is ClaimResult.FENCED
        assert not a.is_held and a.token is None
        assert b.claim("job@2", 60) is ClaimResult.CLAIMED

    def test_taken_and_fenced_are_told_apart(self, contenders):
        """The live holder claiming a claimed key gets TAKEN; only a stale token gets FENCED."""
        a = contenders.new()
        assert a.acquire()
        first = a.claim("k", 60)
        assert first is ClaimResult.CLAIMED and first
        second = a.claim("k", 60)
        assert second is ClaimResult.TAKEN and not second
        assert a.is_held

    def test_instance_that_never_acquired_claims_unfenced(self, contenders):
        """A claim by an instance without a token is not fenced (claims stay independent of the lease)."""
        a, c = contenders.new(), contenders.new()
        assert a.acquire()
        a.release()
        assert c.claim("k", 60) is ClaimResult.CLAIMED

    def test_a_lost_counter_fences_the_holder(self, contenders):
        """When the counter is gone the holder's token proves nothing: its claim is FENCED."""
        if contenders.kind == "local":
            pytest.skip("the LocalLock counter lives in memory and cannot be lost")
        a = contenders.new()
        assert a.acquire()
        contenders.lose_counter()
        assert a.claim("k", 60) is ClaimResult.FENCED

    def test_claim_result_is_truthy_only_when_claimed(self):
        """ClaimResult reads as True only for CLAIMED, so `if lock.claim(...)` keeps working."""
        assert [bool(r) for r in ClaimResult] == [True, False, False, False]
        assert str(ClaimResult.FENCED) == "fenced"


# -- split brain, real processes ---------------------------------------------------------------


def start_holder(*args):
    return subprocess.Popen(
        [sys.executable, HOLDER, *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def finish(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()


def send(proc, *lines):
    proc.stdin.write("".join(line + "\n" for line in lines))
    proc.stdin.flush()


def wait_until(predicate, limit):
    """Poll *predicate* until true; the condition is a lease running out in real time."""
    deadline = gevent.get_hub().loop.now() + limit
    while not predicate():
        assert gevent.get_hub().loop.now() < deadline, "condition not reached in %ss" % limit
        gevent.sleep(0.02)  # real time is the subject: a Redis ttl passing


@pytest.fixture
def client(redis_server):  # noqa: F811
    c = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield c
    finally:
        c.close()


class TestSplitBrain:
    @pytest.mark.timeout(30)
    def test_sigstopped_redis_leader_is_fenced_after_takeover(self, redis_server, client):  # noqa: F811
        """[MUST] A RedisLock leader SIGSTOPped past its ttl, taken over, SIGCONTed: its claims are FENCED."""
        proc = start_holder("redis", redis_server.url, "leader", 1.0)
        new = RedisLock(redis_server.url, "leader", ttl=1.0)
        try:
            state, token, _holder = proc.stdout.readline().split()
            assert state == "held"
            os.kill(proc.pid, signal.SIGSTOP)
            wait_until(lambda: not client.exists("leader"), 10)
            assert new.acquire() and new.token > int(token)
            assert new.claim("job@1", 60) is ClaimResult.CLAIMED
            # The resumed leader still believes it leads and tries this tick and the next.
            send(proc, "claim job@1", "claim job@2")
            os.kill(proc.pid, signal.SIGCONT)
            stale = [proc.stdout.readline().split() for _ in range(2)]
            assert new.claim("job@2", 60) is ClaimResult.CLAIMED
            assert client.get("leader:claim:job@1") == client.get("leader:claim:job@2") == new.holder
        finally:
            new.release()
            finish(proc)
        assert stale == [["fenced", "False"], ["fenced", "False"]]

    @pytest.mark.timeout(30)
    def test_redis_leader_with_a_blocked_hub_is_fenced(self, redis_server, client, tmp_path):  # noqa: F811
        """[MUST] A leader whose hub is blocked by 2x ttl of unpatched CPU work is fenced when it resumes."""
        proc = start_holder("redis", redis_server.url, "leader", 1.0)
        new = RedisLock(redis_server.url, "leader", ttl=1.0)
        flag = tmp_path / "go"
        try:
            assert proc.stdout.readline().split()[0] == "held"
            send(proc, "block 2.0 %s" % flag, "claim job@1", "claim job@3")
            wait_until(lambda: not client.exists("leader"), 10)  # its renewal greenlet cannot run
            assert new.acquire() and new.claim("job@1", 60)
            flag.touch()
            blocked = float(proc.stdout.readline().split()[1])
            stale = [proc.stdout.readline().split() for _ in range(2)]
        finally:
            new.release()
            finish(proc)
        assert blocked >= 2.0
        assert stale == [["fenced", "False"], ["fenced", "False"]]
        assert client.get("leader:claim:job@1") == new.holder
        assert not client.exists("leader:claim:job@3")

    @pytest.mark.timeout(30)
    def test_sigstopped_file_leader_keeps_its_flock_and_is_fenced_once_the_file_is_replaced(self, tmp_path):
        """[MUST] A paused FileLock holder keeps the lease; if its file is replaced, its claims are FENCED."""
        path = tmp_path / "lock"
        proc = start_holder("file", path)
        new = FileLock(path)
        try:
            state, token, _holder = proc.stdout.readline().split()
            assert state == "held"
            os.kill(proc.pid, signal.SIGSTOP)
            assert not new.acquire()  # a flock does not expire: a paused holder is not taken over
            os.unlink(path)  # e.g. a temp-file cleaner: the one way to two flock holders
            assert new.acquire() and new.token > int(token)
            assert new.claim("job@1", 60) is ClaimResult.CLAIMED
            send(proc, "claim job@1", "claim job@2")
            os.kill(proc.pid, signal.SIGCONT)
            stale = [proc.stdout.readline().split() for _ in range(2)]
            assert new.claim("job@2", 60) is ClaimResult.CLAIMED
            assert new.claim("job@1", 60) is ClaimResult.TAKEN
        finally:
            new.release()
            finish(proc)
        assert stale == [["fenced", "False"], ["fenced", "False"]]
