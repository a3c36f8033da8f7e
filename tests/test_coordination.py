"""Tests for greenworks.coordination: LocalLock, FileLock and singleton."""

import logging
import os
import signal
import subprocess
import sys

import gevent
import gevent.os
import pytest
from gevent import monkey
from gevent.event import Event
from zope.interface.verify import verifyClass, verifyObject

from greenworks import _greenlets
from greenworks.context import with_cancel
from greenworks.coordination import ClaimResult, FileLock, LocalLock, singleton
from greenworks.exceptions import InvalidArgument
from greenworks.interfaces import ILeaderLock, IWorker

HOLDER = os.path.join(os.path.dirname(__file__), "_lock_holder.py")


def start_holder(*args):
    """Start tests/_lock_holder.py with *args*; return (process, first stdout line)."""
    proc = subprocess.Popen(
        [sys.executable, HOLDER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    return proc


def kill(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


class TestInterfaces:
    def test_local_lock_provides_ileaderlock(self):
        """LocalLock implements and provides ILeaderLock (attributes included)."""
        assert verifyClass(ILeaderLock, LocalLock)
        assert verifyObject(ILeaderLock, LocalLock())

    def test_local_lock_has_no_backend_error(self):
        """LocalLock has no backend: last_error is always None."""
        assert LocalLock().last_error is None

    def test_file_lock_provides_ileaderlock(self, tmp_path):
        """FileLock implements and provides ILeaderLock (attributes included)."""
        assert verifyClass(ILeaderLock, FileLock)
        assert verifyObject(ILeaderLock, FileLock(tmp_path / "lock"))

    def test_singleton_provides_iworker(self):
        """singleton() returns an IWorker."""
        wrapped = singleton(LocalLock(), _Recorder())
        assert verifyObject(IWorker, wrapped)


# -- LocalLock ----------------------------------------------------------------


class TestLocalLock:
    def test_lone_lock_is_always_acquirable(self):
        """A lone LocalLock is always its own leader: acquire, renew, release, acquire again."""
        lock = LocalLock()
        assert not lock.is_held
        assert lock.acquire(5)
        assert lock.acquire(5)
        assert lock.is_held and lock.renew()
        lock.release()
        assert not lock.is_held and not lock.renew()
        assert lock.acquire()

    def test_peers_are_exclusive(self):
        """Peers share one lease: only one holds it; release hands it over."""
        a = LocalLock()
        b = a.peer()
        assert a.acquire(5)
        assert not b.acquire(5)
        b.release()  # releasing a lease one does not hold touches nothing
        assert a.is_held
        a.release()
        assert b.acquire(5) and b.is_held and not a.is_held

    def test_lease_expires_without_renew(self, clock):
        """A peer takes over once the holder's ttl passed without renew()."""
        a = LocalLock(clock=clock)
        b = a.peer()
        assert a.acquire(10)
        clock.advance(9.9)
        assert not b.acquire(10)
        clock.advance(0.1)
        assert not a.is_held
        assert b.acquire(10)
        assert not a.renew()

    def test_renew_extends_the_lease(self, clock):
        """renew() pushes the expiry a full ttl forward."""
        a = LocalLock(clock=clock)
        b = a.peer()
        assert a.acquire(10)
        clock.advance(6)
        assert a.renew()
        clock.advance(6)
        assert not b.acquire(10)
        assert a.is_held

    def test_default_ttl_from_constructor(self, clock):
        """acquire() without ttl uses the constructor's ttl."""
        a = LocalLock(ttl=2, clock=clock)
        b = a.peer()
        assert a.acquire()
        clock.advance(2)
        assert b.acquire()

    def test_claim_once_per_key_while_it_lives(self, clock):
        """claim() is True once per key across peers until its ttl passed."""
        a = LocalLock(clock=clock)
        b = a.peer()
        assert a.claim("job@1", 5)
        assert not a.claim("job@1", 5)
        assert not b.claim("job@1", 5)
        assert b.claim("job@2", 5)
        clock.advance(5)
        assert b.claim("job@1", 5)

    def test_holder_ids_are_distinct(self):
        """Each instance and peer has its own host:pid:nonce holder id."""
        a = LocalLock()
        b = a.peer()
        assert a.holder != b.holder
        host, pid, nonce = a.holder.split(":")
        assert int(pid) == os.getpid() and host and nonce

    @pytest.mark.parametrize("bad", [0, -1, "5", True, float("nan")])
    def test_bad_ttl_is_rejected(self, bad):
        """A ttl that is not a number > 0 raises InvalidArgument naming it, at every entry point."""
        with pytest.raises(InvalidArgument, match="ttl must be"):
            LocalLock(ttl=bad)
        with pytest.raises(InvalidArgument, match="ttl must be"):
            LocalLock().acquire(bad)
        with pytest.raises(InvalidArgument, match="ttl must be"):
            LocalLock().claim("k", bad)

    def test_claim_key_must_be_a_str(self):
        """claim() names a key that is not a str."""
        with pytest.raises(InvalidArgument, match="key must be"):
            LocalLock().claim(7, 1)


# -- FileLock -----------------------------------------------------------------


class TestFileLock:
    def test_exclusive_between_instances(self, tmp_path):
        """Two FileLocks on one path exclude each other, even inside one process."""
        a = FileLock(tmp_path / "lock")
        b = FileLock(tmp_path / "lock")
        try:
            assert a.acquire()
            assert a.acquire()  # the holder asking again keeps it
            assert not b.acquire() and not b.is_held
            a.release()
            assert not a.is_held and not a.renew()
            assert b.acquire() and b.renew()
        finally:
            a.release()
            b.release()

    def test_holder_is_written_into_the_lock_file(self, tmp_path):
        """The holder id is readable from the file while held and cleared on release."""
        a = FileLock(tmp_path / "lock")
        assert a.read_holder() == ""
        assert a.acquire()
        assert FileLock(tmp_path / "lock").read_holder() == a.holder
        a.release()
        assert a.read_holder() == ""

    def test_takeover_after_holder_is_sigkilled(self, tmp_path):
        """The kernel frees the flock when the holder process dies: takeover is immediate."""
        path = str(tmp_path / "lock")
        proc = start_holder("file", path)
        lock = FileLock(path)
        try:
            state, holder = proc.stdout.readline().split()
            assert state == "held"
            assert holder.split(":")[1] == str(proc.pid)
            assert lock.read_holder() == holder
            assert not lock.acquire()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert lock.acquire()
            assert lock.read_holder() == lock.holder
        finally:
            kill(proc)
            lock.release()

    def test_subprocess_cannot_take_a_held_lock(self, tmp_path):
        """A process sees the lock as busy while this one holds it."""
        path = str(tmp_path / "lock")
        lock = FileLock(path)
        assert lock.acquire()
        proc = start_holder("file", path)
        try:
            assert proc.stdout.readline().split()[0] == "busy"
        finally:
            kill(proc)
            lock.release()

    def test_replaced_lock_file_loses_the_lease(self, tmp_path):
        """renew() is False once the lock file was unlinked and recreated by someone else."""
        path = tmp_path / "lock"
        a = FileLock(path)
        b = FileLock(path)
        try:
            assert a.acquire()
            os.unlink(path)
            assert b.acquire()  # locks the new inode
            assert not a.renew() and not a.is_held
            assert b.renew()
        finally:
            a.release()
            b.release()

    def test_forked_child_does_not_inherit_leadership(self, tmp_path):
        """After fork the child is not the holder and cannot acquire while the parent holds."""
        lock = FileLock(tmp_path / "lock")
        assert lock.acquire()
        read_fd, write_fd = os.pipe()
        # The unpatched fork: gevent's fork hooks are not what is under test,
        # and the child only makes plain syscalls before os._exit.
        pid = monkey.get_original("os", "fork")()
        if pid == 0:  # pragma: no cover - child
            try:
                report = "%s %s %s" % (lock.is_held, lock.acquire(), lock.holder.split(":")[1])
                os.write(write_fd, report.encode())
            finally:
                os._exit(0)
        # gevent's os.close defers closing a pipe to the hub; close it now so
        # EOF comes once the child exited. The read is cooperative, so the
        # per-test guard still fires if the child hangs.
        monkey.get_original("os", "close")(write_fd)
        gevent.os.make_nonblocking(read_fd)
        chunks = []
        try:
            while True:
                chunk = gevent.os.nb_read(read_fd, 256)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            monkey.get_original("os", "close")(read_fd)
            monkey.get_original("os", "waitpid")(pid, 0)
        report = b"".join(chunks).decode()
        assert report == "False False %d" % pid
        # the child closed its inherited descriptor without unlocking ours
        assert lock.is_held and lock.renew()
        assert not FileLock(tmp_path / "lock").acquire()
        lock.release()

    def test_missing_directory_is_refused_at_construction(self, tmp_path):
        """[14.6] FileLock in a directory that does not exist raises InvalidArgument naming path."""
        with pytest.raises(InvalidArgument, match=r"path must be a path in an existing, writable directory"):
            FileLock(tmp_path / "missing-dir" / "lock")

    def test_path_under_a_regular_file_is_refused(self, tmp_path):
        """A lock path whose parent is a file (not a directory) is refused at construction."""
        (tmp_path / "file").write_text("")
        with pytest.raises(InvalidArgument, match="path must be"):
            FileLock(tmp_path / "file" / "lock")

    @pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
    def test_unwritable_directory_is_refused(self, tmp_path):
        """[14.6] A directory this process may not write to is refused at construction."""
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(InvalidArgument, match="path must be"):
            FileLock(locked / "lock")

    def test_claims_dir_that_cannot_be_created_is_refused(self, tmp_path):
        """A claims_dir that cannot be made is refused at construction, naming claims_dir."""
        (tmp_path / "file").write_text("")
        with pytest.raises(InvalidArgument, match="claims_dir must be"):
            FileLock(tmp_path / "lock", claims_dir=tmp_path / "file" / "claims")

    def test_file_system_errors_are_logged_once_per_outage(self, tmp_path, caplog):
        """Failing claims log one WARNING and set last_error; the first success logs the recovery once."""
        lock = FileLock(tmp_path / "lock")
        claims = tmp_path / "lock.claims"
        for name in os.listdir(claims):
            os.unlink(claims / name)
        os.rmdir(claims)
        claims.write_text("")  # a file where the claims directory must be
        with caplog.at_level(logging.DEBUG, logger="greenworks.coordination._file"):
            assert [lock.claim("k%d" % i, 5) for i in range(3)] == [ClaimResult.FAILED] * 3
            assert isinstance(lock.last_error, OSError)
            os.unlink(claims)
            assert lock.claim("k", 5) is ClaimResult.CLAIMED
            assert lock.claim("k2", 5) is ClaimResult.CLAIMED
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2, warnings
        assert "claim 'k0' failed" in warnings[0] and "reachable again after 3 failed" in warnings[1]
        assert lock.last_error is None

    def test_contender_on_a_replaced_file_contends_for_the_new_one(self, tmp_path):
        """A contender that failed on the old inode takes the new lock file once the old one is gone."""
        path = tmp_path / "lock"
        a, b = FileLock(path), FileLock(path)
        try:
            assert a.acquire() and not b.acquire()
            os.unlink(path)
            assert b.acquire() and b.token > a.token
            assert not a.renew()
        finally:
            a.release()
            b.release()

    def test_bad_path_is_rejected(self):
        """A path that is not a str/PathLike raises InvalidArgument naming it."""
        with pytest.raises(InvalidArgument, match="path must be"):
            FileLock(42)
        with pytest.raises(InvalidArgument, match="path must be"):
            FileLock("")


class TestFileLockClaims:
    def test_claim_once_per_key(self, tmp_path):
        """A claim is True for one FileLock instance per key, False for the rest."""
        a = FileLock(tmp_path / "lock")
        b = FileLock(tmp_path / "lock")
        assert a.claim("job@2026-01-01T00:00", 30)
        assert not b.claim("job@2026-01-01T00:00", 30)
        assert not a.claim("job@2026-01-01T00:00", 30)
        assert b.claim("job@2026-01-01T00:01", 30)

    def test_expired_claim_can_be_taken_again(self, tmp_path, clock):
        """Once its wall-clock expiry passed, a key can be claimed again."""
        a = FileLock(tmp_path / "lock", clock=clock)
        assert a.claim("k", 5)
        clock.advance(4.9)
        assert not a.claim("k", 5)
        clock.advance(0.1)
        assert a.claim("k", 5)

    def test_expired_claims_are_swept(self, tmp_path, clock):
        """Expired claim files are deleted by a later claim, live ones are kept."""
        a = FileLock(tmp_path / "lock", clock=clock)
        for i in range(5):
            assert a.claim("old%d" % i, 1)
        clock.advance(60)
        assert a.claim("new", 120)
        names = [n for n in os.listdir(tmp_path / "lock.claims") if not n.startswith(".")]
        assert len(names) == 1

    def test_claims_race_across_processes(self, tmp_path):
        """Four processes racing for the same 40 keys: each key is won exactly once."""
        path = str(tmp_path / "lock")
        keys = ["job%d@t" % i for i in range(40)]
        procs = [start_holder("claim", path, *keys) for _ in range(4)]
        try:
            for proc in procs:
                proc.stdin.write("go\n")
                proc.stdin.flush()
            won = [proc.stdout.readline().split() for proc in procs]
        finally:
            for proc in procs:
                kill(proc)
        flat = [key for keys_won in won for key in keys_won]
        assert sorted(flat) == sorted(keys)

    def test_claim_rejects_bad_arguments(self, tmp_path):
        """claim() names a bad ttl or a non-str key."""
        lock = FileLock(tmp_path / "lock")
        with pytest.raises(InvalidArgument, match="ttl must be"):
            lock.claim("k", 0)
        with pytest.raises(InvalidArgument, match="key must be"):
            lock.claim(3, 1)


# -- singleton ----------------------------------------------------------------


class _Recorder:
    """An IWorker recording its runs; each run waits for its ctx or a stop event."""

    def __init__(self, fail=None):
        self.started = gevent.queue.Queue()
        self.runs = 0
        self.exit_now = Event()
        self.fail = fail

    def run(self, ctx):
        self.runs += 1
        self.started.put(ctx)
        ctx.clock.wait(_either(ctx.done, self.exit_now), None)
        if self.fail is not None and self.exit_now.is_set():
            raise self.fail


def _either(a, b):
    both = Event()
    a.rawlink(lambda _: both.set())
    b.rawlink(lambda _: both.set())
    return both


class TestSingleton:
    def _start(self, wrapped, clock):
        ctx = with_cancel(clock=clock)
        g = gevent.spawn(wrapped.run, ctx)
        return ctx, g

    def test_only_one_process_runs_the_worker_and_the_other_takes_over(self, clock):
        """Two contenders on one lease: one runs; when it stops, the other takes over within a poll."""
        lock_a = LocalLock(clock=clock)
        lock_b = lock_a.peer()
        worker_a, worker_b = _Recorder(), _Recorder()
        ctx_a, g_a = self._start(singleton(lock_a, worker_a, ttl=3, poll=1, clock=clock), clock)
        ctx_b, g_b = self._start(singleton(lock_b, worker_b, ttl=3, poll=1, clock=clock), clock)
        try:
            worker_a.started.get(timeout=5)
            for _ in range(5):
                clock.advance(1)
            assert worker_b.runs == 0 and lock_a.is_held
            ctx_a.cancel()
            g_a.join(timeout=5)
            assert not lock_a.is_held
            clock.advance(1)
            worker_b.started.get(timeout=5)
            assert lock_b.is_held and worker_a.runs == 1
        finally:
            ctx_a.cancel()
            ctx_b.cancel()
            gevent.joinall([g_a, g_b], timeout=5)
        assert not lock_b.is_held
        assert g_a.successful() and g_b.successful()

    def test_lost_lease_cancels_the_worker_and_contends_again(self, clock):
        """When renew() fails the inner ctx is cancelled, the lock released, and the lease re-won."""
        lock = LocalLock(clock=clock)
        worker = _Recorder()
        ctx, g = self._start(singleton(lock, worker, poll=1, clock=clock), clock)
        try:
            first = worker.started.get(timeout=5)
            lock.release()  # the lease vanishes under the leader
            clock.advance(1)
            assert first.done.is_set()
            clock.advance(1)  # waited one poll, won it again
            second = worker.started.get(timeout=5)
            assert not second.done.is_set() and worker.runs == 2 and lock.is_held
        finally:
            ctx.cancel()
            g.join(timeout=5)
        assert not lock.is_held

    def test_worker_returning_by_itself_ends_singleton(self, clock):
        """The inner worker returning on its own ends run() and releases the lock."""
        lock = LocalLock(clock=clock)
        worker = _Recorder()
        ctx, g = self._start(singleton(lock, worker, clock=clock), clock)
        worker.started.get(timeout=5)
        worker.exit_now.set()
        g.join(timeout=5)
        assert g.successful() and not lock.is_held and not ctx.done.is_set()
        ctx.cancel()

    def test_worker_error_propagates_after_release(self, clock):
        """An exception from the inner worker passes through run() after the lock was released."""
        lock = LocalLock(clock=clock)
        worker = _Recorder(fail=RuntimeError("boom"))
        ctx, g = self._start(singleton(lock, worker, clock=clock), clock)
        worker.started.get(timeout=5)
        worker.exit_now.set()
        g.join(timeout=5)
        assert isinstance(g.exception, RuntimeError) and not lock.is_held
        ctx.cancel()

    def test_renewal_greenlet_is_named_and_gone_after_stop(self, clock):
        """The lease watcher is a tracked greenworks greenlet that ends with the worker."""
        lock = LocalLock(clock=clock)
        worker = _Recorder()
        ctx, g = self._start(singleton(lock, worker, name="mailer", clock=clock), clock)
        worker.started.get(timeout=5)
        assert [x.name for x in _greenlets.alive()] == ["greenworks.coordination.singleton[mailer]"]
        ctx.cancel()
        g.join(timeout=5)
        assert _greenlets.alive() == []

    def test_bad_arguments_are_rejected(self):
        """singleton() names a bad lock, worker, ttl or poll."""
        with pytest.raises(InvalidArgument, match="lock must be"):
            singleton(object(), _Recorder())
        with pytest.raises(InvalidArgument, match="worker must be"):
            singleton(LocalLock(), object())
        with pytest.raises(InvalidArgument, match="ttl must be"):
            singleton(LocalLock(), _Recorder(), ttl=0)
        with pytest.raises(InvalidArgument, match="poll must be"):
            singleton(LocalLock(), _Recorder(), poll=-1)
