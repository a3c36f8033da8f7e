"""Tests for greenworks.jobstores: MemoryJobStore, SQLiteJobStore, RedisJobStore.

One contract runs against all three (the Redis one on a real redis-server);
then each backend's own promises: SQLite across real processes racing one
due time, a held write lock, a fork; Redis across processes, a restart with
and without its data, a server that is down.
"""

import datetime
import json
import logging
import os
import sqlite3
import subprocess
import sys

import gevent
import pytest
import redis
from _redis_server import redis_server  # noqa: F401 - the fixture
from gevent.event import Event
from zope.interface.verify import verifyClass, verifyObject

from greenworks import _jobstores_core, _jobstores_sqlite
from greenworks.exceptions import InvalidArgument
from greenworks.interfaces import IJobStore
from greenworks.jobstores import Claim, JobState, LastRun, MemoryJobStore, RedisJobStore, SQLiteJobStore

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 1, 1, 2, tzinfo=UTC)
MINUTE = datetime.timedelta(minutes=1)
RACER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_jobstore_racer.py")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    """One store of each kind, empty."""
    if request.param == "memory":
        made = MemoryJobStore()
    elif request.param == "sqlite":
        made = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    else:
        made = RedisJobStore(request.getfixturevalue("redis_server").url)
    yield made
    made.close()


def run(due=T0, outcome="ok", error=None):
    return LastRun(due, due + datetime.timedelta(seconds=1), 2.5, outcome, error)


class TestInterfaces:
    def test_stores_provide_ijobstore(self, store):
        """Each store class implements IJobStore and its instances provide it."""
        assert verifyClass(IJobStore, type(store))
        assert verifyObject(IJobStore, store)

    def test_claim_is_true_only_when_claimed(self):
        """Claim.CLAIMED is the only true answer, so `if store.claim(...)` reads right."""
        assert [bool(c) for c in Claim] == [True, False, False, False]


class TestContract:
    def test_add_inserts_once_and_keeps_what_is_stored(self, store):
        """add() stores a new job's next_due, and on a second add returns the stored state untouched."""
        assert store.add("report", next_due=T0) == JobState("report", next_due=T0)
        assert store.claim("report", T0, next_due=T0 + MINUTE)
        again = store.add("report", next_due=T0 + 60 * MINUTE)
        assert (again.last_due, again.next_due) == (T0, T0 + MINUTE)
        assert store.get("report") == again and store.get("unknown") is None

    def test_claim_is_a_compare_and_set_on_the_last_due_time(self, store):
        """A due time is claimed once; the same or an earlier one is TAKEN; a later one is CLAIMED."""
        assert store.claim("j", T0) is Claim.CLAIMED
        assert store.claim("j", T0) is Claim.TAKEN
        assert store.claim("j", T0 - MINUTE) is Claim.TAKEN
        assert store.claim("j", T0 + MINUTE, next_due=T0 + 2 * MINUTE) is Claim.CLAIMED
        state = store.get("j")
        assert (state.last_due, state.next_due) == (T0 + MINUTE, T0 + 2 * MINUTE)
        assert store.claim("j", T0 + 2 * MINUTE).value == "claimed"
        assert store.get("j").next_due == T0 + 2 * MINUTE  # next_due=None leaves it

    def test_paused_job_is_not_claimed(self, store):
        """While paused, claim() is PAUSED and records nothing; resumed, the due time can be claimed."""
        store.add("j")
        assert store.set_paused("j", True)
        assert store.claim("j", T0) is Claim.PAUSED and store.get("j").last_due is None
        assert store.get("j").paused
        assert store.set_paused("j", False)
        assert store.claim("j", T0) is Claim.CLAIMED

    def test_claim_many_answers_each_in_order(self, store):
        """claim_many claims every item on its own and answers in the order asked."""
        store.claim("b", T0)
        store.set_paused("c", True)
        answers = store.claim_many([("a", T0), ("b", T0, T0 + MINUTE), ("c", T0), ("d", T0, None)])
        assert answers == [Claim.CLAIMED, Claim.TAKEN, Claim.PAUSED, Claim.CLAIMED]
        assert store.claim_many([]) == []

    def test_greenlets_racing_one_due_time(self, store):
        """Of 20 greenlets claiming the same due time, exactly one wins."""
        racers = [gevent.spawn(store.claim, "j", T0) for _ in range(20)]
        gevent.joinall(racers, raise_error=True)
        assert sorted(g.value.value for g in racers) == ["claimed"] + ["taken"] * 19

    def test_next_due_paused_and_last_run(self, store):
        """set_next_due, set_paused and record_run store their values, creating the job if needed."""
        assert store.set_next_due("j", T0)
        assert store.record_run("j", run(error="boom"))
        state = store.get("j")
        assert state.next_due == T0 and state.last_run == run(error="boom") and not state.paused
        assert store.set_next_due("j", None) and store.get("j").next_due is None
        assert store.record_run("j", run()) and store.get("j").last_run.error is None

    def test_times_are_aware_utc_to_the_microsecond(self, store):
        """Times in any zone come back as aware UTC datetimes, microseconds kept."""
        berlin = datetime.timezone(datetime.timedelta(hours=1))
        due = datetime.datetime(2026, 1, 1, 3, 0, 0, 123456, tzinfo=berlin)
        store.claim("j", due, next_due=due + MINUTE)
        state = store.get("j")
        assert state.last_due == due and state.last_due.tzinfo is UTC and state.last_due.microsecond == 123456

    def test_states_and_remove(self, store):
        """states() lists every job; remove() forgets one (and is fine for an unknown id)."""
        for name in ("a", "b", "c"):
            store.add(name, next_due=T0)
        store.claim("b", T0)
        assert sorted(store.states()) == ["a", "b", "c"]
        assert store.remove("b") and store.remove("never")
        assert sorted(store.states()) == ["a", "c"] and store.get("b") is None
        assert store.claim("b", T0) is Claim.CLAIMED  # removed: its history is gone too

    def test_snapshot_is_json(self, store):
        """snapshot() is JSON with the kind, name and no error; JobState.to_dict() is JSON too."""
        snap = json.loads(json.dumps(store.snapshot()))
        assert snap["kind"] in ("memory", "sqlite", "redis") and snap["error"] is None
        assert snap["name"] == store.name and store.error is None
        store.record_run("j", run(outcome="error", error="x" * 5000))
        data = json.loads(json.dumps(store.get("j").to_dict()))
        assert data["last_run"]["outcome"] == "error" and len(data["last_run"]["error"]) == 2000

    @pytest.mark.parametrize(
        "call, name",
        [
            (lambda s: s.claim("", T0), "job_id"),
            (lambda s: s.claim(3, T0), "job_id"),
            (lambda s: s.claim("j", datetime.datetime(2026, 1, 1)), "due"),
            (lambda s: s.claim("j", T0, next_due="soon"), "next_due"),
            (lambda s: s.add("j", next_due=datetime.datetime(2026, 1, 1)), "next_due"),
            (lambda s: s.set_paused("j", 1), "paused"),
            (lambda s: s.record_run("j", {"outcome": "ok"}), "last_run"),
            (lambda s: s.claim_many([("j",)]), r"claims\[0\]"),
            (lambda s: s.claim_many(5), "claims"),
            (lambda s: s.get(""), "job_id"),
        ],
    )
    def test_bad_arguments_raise_naming_them(self, store, call, name):
        """Bad arguments raise InvalidArgument naming the argument, whatever the backend."""
        with pytest.raises(InvalidArgument, match="^%s must be" % name):
            call(store)


class TestRecords:
    @pytest.mark.parametrize(
        "kwargs, name",
        [
            ({"outcome": "maybe"}, "outcome"),
            ({"duration": -1}, "duration"),
            ({"duration": float("nan")}, "duration"),
            ({"due": datetime.datetime(2026, 1, 1)}, "due"),
            ({"error": 3}, "error"),
        ],
    )
    def test_last_run_checks_its_fields(self, kwargs, name):
        """LastRun refuses a bad field with InvalidArgument naming it."""
        fields = {"due": T0, "started_at": T0, "duration": 1.0, "outcome": "ok", **kwargs}
        with pytest.raises(InvalidArgument, match="^%s must be" % name):
            LastRun(**fields)


class TestSQLite:
    def test_state_survives_a_new_store_on_the_file(self, tmp_path):
        """A store opened again on the same file (a restart) sees the state, and refuses the old due time."""
        path = str(tmp_path / "jobs.sqlite3")
        first = SQLiteJobStore(path)
        first.add("report", next_due=T0)
        first.claim("report", T0, next_due=T0 + MINUTE)
        first.close()
        again = SQLiteJobStore(path)
        assert again.get("report").last_due == T0 and again.get("report").next_due == T0 + MINUTE
        assert again.claim("report", T0) is Claim.TAKEN
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        again.close()

    def test_unusable_paths_fail_at_construction(self, tmp_path):
        """A missing directory, a non-database file, :memory: or a bad table raise InvalidArgument."""
        with pytest.raises(InvalidArgument, match="does not exist"):
            SQLiteJobStore(tmp_path / "missing" / "jobs.sqlite3")
        garbage = tmp_path / "not-a-db"
        garbage.write_bytes(b"this is not a database" * 100)
        with pytest.raises(InvalidArgument, match="cannot be opened as a job store"):
            SQLiteJobStore(garbage)
        with pytest.raises(InvalidArgument, match=r"^path must be"):
            SQLiteJobStore(":memory:")
        with pytest.raises(InvalidArgument, match=r"^path must be"):
            SQLiteJobStore(3)
        with pytest.raises(InvalidArgument, match=r"^table must be"):
            SQLiteJobStore(tmp_path / "ok.sqlite3", table="jobs; DROP TABLE x")
        with pytest.raises(InvalidArgument, match=r"^timeout must be"):
            SQLiteJobStore(tmp_path / "ok.sqlite3", timeout=float("nan"))

    @pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
    def test_read_only_directory_fails_at_construction(self, tmp_path):
        """A directory the process cannot write (WAL needs -wal and -shm files) raises InvalidArgument."""
        tmp_path.chmod(0o500)
        try:
            with pytest.raises(InvalidArgument, match=r"not writable|is not"):
                SQLiteJobStore(tmp_path / "jobs.sqlite3")
        finally:
            tmp_path.chmod(0o700)

    def test_waiting_for_a_lock_blocks_only_the_caller(self, tmp_path):
        """While another process holds the write lock, claim() waits in its greenlet and the hub runs on."""
        path = str(tmp_path / "jobs.sqlite3")
        store = SQLiteJobStore(path, timeout=10)
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        claimer = gevent.spawn(store.claim, "j", T0)
        other = Event()
        gevent.spawn(other.set)
        assert other.wait(5) and not claimer.ready()
        raw.execute("ROLLBACK")
        assert claimer.get(timeout=10) is Claim.CLAIMED
        raw.close()
        store.close()

    def test_backend_error_is_logged_once_and_read_as_not_recorded(self, tmp_path, caplog):
        """A write lock held past the timeout: writes give safe answers, one ERROR log; then it recovers."""
        path = str(tmp_path / "jobs.sqlite3")
        store = SQLiteJobStore(path, timeout=0.05)
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("BEGIN EXCLUSIVE")
        with caplog.at_level(logging.INFO, logger="greenworks._jobstores_sqlite"):
            assert store.claim("j", T0) is Claim.ERROR
            assert store.claim_many([("j", T0), ("k", T0)]) == [Claim.ERROR, Claim.ERROR]
            assert store.set_paused("j", True) is False and store.record_run("j", run()) is False
            assert store.add("j") is None and store.remove("j") is False
            assert "locked" in store.error and store.snapshot()["errors_total"] == 6
            raw.execute("ROLLBACK")
            assert store.claim("j", T0) is Claim.CLAIMED and store.error is None
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "said once per outage" in errors[0].getMessage()
        assert any("answers again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
        raw.close()
        store.close()

    def test_a_forked_child_opens_its_own_connection(self, tmp_path, monkeypatch):
        """After a fork (a new pid) the store leaves the inherited connection alone and opens another."""
        store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        store.claim("j", T0)
        inherited = store._conn
        monkeypatch.setattr(_jobstores_sqlite.os, "getpid", lambda: -1)
        assert store.claim("j", T0 + MINUTE) is Claim.CLAIMED
        assert store._conn is not inherited and _jobstores_sqlite._INHERITED[-1] is inherited
        store.close()

    @pytest.mark.timeout(60)
    def test_processes_racing_one_due_time(self, tmp_path):
        """4 processes claim each of 12 due times at once: each due time has exactly one winner (~2 s)."""
        path = str(tmp_path / "jobs.sqlite3")
        SQLiteJobStore(path).close()
        assert race([sys.executable, RACER, "sqlite", path], processes=4, rounds=12) == ["claimed"] * 12
        assert SQLiteJobStore(path).get("race").last_due == T0 + 11 * MINUTE


def race(command, processes, rounds):
    """Start *processes* racers, send each due time to all of them, return each round's winners."""
    procs = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    winners = []
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready"] * processes
        for n in range(rounds):
            line = "race %s\n" % (T0 + n * MINUTE).isoformat()
            for p in procs:  # every racer gets the line before any answer is read
                p.stdin.write(line)
                p.stdin.flush()
            answers = sorted(p.stdout.readline().strip() for p in procs)
            assert answers == ["claimed"] + ["taken"] * (processes - 1), answers
            winners.append(answers[0])
    finally:
        for p in procs:
            p.stdin.close()
        for p in procs:
            p.wait(timeout=30)
            p.stdout.close()
    return winners


class TestRedis:
    def test_state_survives_a_new_store(self, redis_server):  # noqa: F811
        """A new store on the same server (a restart of the process) sees the state."""
        first = RedisJobStore(redis_server.url, "app:jobs")
        first.add("report", next_due=T0)
        first.claim("report", T0, next_due=T0 + MINUTE)
        again = RedisJobStore(redis_server.url, "app:jobs")
        assert again.get("report").last_due == T0 and again.claim("report", T0) is Claim.TAKEN
        assert RedisJobStore(redis_server.url, "other").get("report") is None  # prefixes are separate
        raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
        assert raw.hget("app:jobs:job:report", "last_due") == str(int(T0.timestamp()) * 10**6)
        assert raw.smembers("app:jobs:ids") == {"report"}
        raw.close()

    def test_restart_with_its_data_keeps_the_state(self, redis_server):  # noqa: F811
        """Redis restarted from a saved dump: the state is back, and the claims script is loaded again."""
        store = RedisJobStore(redis_server.url)
        store.claim("j", T0)
        raw = redis.Redis.from_url(redis_server.url)
        raw.save()
        raw.close()
        redis_server.restart()
        fresh = RedisJobStore(redis_server.url)
        assert fresh.get("j").last_due == T0
        assert fresh.claim("j", T0) is Claim.TAKEN and fresh.claim("j", T0 + MINUTE) is Claim.CLAIMED

    def test_restart_without_data_never_reclaims_here(self, redis_server):  # noqa: F811
        """Redis restarted empty: this store still refuses due times it saw; a new one cannot know them."""
        store = RedisJobStore(redis_server.url)
        store.claim("j", T0)
        redis_server.restart()
        assert store.claim("j", T0) is Claim.TAKEN  # remembered here, no round trip
        assert store.claim("j", T0 + MINUTE) is Claim.CLAIMED
        assert RedisJobStore(redis_server.url).get("j").last_due == T0 + MINUTE

    def test_server_down_is_logged_once_and_read_as_not_recorded(self, redis_server, caplog):  # noqa: F811
        """Redis down: every call answers its safe value, one ERROR log; back up, the store recovers."""
        store = RedisJobStore(redis_server.url, timeout=1.0)
        store.add("j")
        redis_server.stop(kill=True)
        with caplog.at_level(logging.INFO, logger="greenworks._jobstores_redis"):
            assert store.claim("j", T0) is Claim.ERROR
            assert store.claim_many([("j", T0), ("k", T0)]) == [Claim.ERROR, Claim.ERROR]
            assert store.set_next_due("j", T0) is False and store.set_paused("j", True) is False
            assert store.record_run("j", run()) is False and store.remove("j") is False
            assert store.get("j") is None and store.states() == {} and store.add("j") is None
            assert store.error is not None and store.snapshot()["error"] == store.error
            redis_server.start()
            assert store.claim("j", T0) is Claim.CLAIMED and store.error is None
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "said once per outage" in errors[0].getMessage()
        assert any("answers again" in r.getMessage() for r in caplog.records)

    @pytest.mark.parametrize("decode", [True, False])
    def test_accepts_a_client(self, redis_server, decode):  # noqa: F811
        """A ready client works, with or without decode_responses, and close() leaves it open."""
        client = redis.Redis.from_url(redis_server.url, decode_responses=decode)
        store = RedisJobStore(client)
        store.add("j", next_due=T0)
        store.record_run("j", run(error="boom"))
        assert store.claim("j", T0) and store.get("j").last_run.error == "boom"
        assert store.states()["j"].last_due == T0
        store.close()
        assert client.ping()
        client.close()

    @pytest.mark.parametrize(
        "args, message",
        [
            (("http://127.0.0.1:1",), "^url_or_client must be a redis://"),
            ((42,), "^url_or_client must be"),
            (("redis://127.0.0.1:1", ""), "^prefix must be"),
        ],
    )
    def test_bad_construction_fails_clearly(self, args, message):
        """A bad URL, a non-client or an empty prefix raise InvalidArgument at construction."""
        with pytest.raises(InvalidArgument, match=message):
            RedisJobStore(*args)

    def test_missing_redis_py_gives_a_clear_error(self, monkeypatch):
        """Without redis-py, building a RedisJobStore says which extra to install."""
        monkeypatch.setitem(sys.modules, "redis", None)
        with pytest.raises(ImportError, match=r"pip install 'greenworks\[redis\]'"):
            RedisJobStore("redis://127.0.0.1:1")

    @pytest.mark.timeout(60)
    def test_processes_racing_one_due_time(self, redis_server):  # noqa: F811
        """4 processes claim each of 12 due times at once through Redis: exactly one winner each (~2 s)."""
        command = [sys.executable, RACER, "redis", redis_server.url, "race:jobs"]
        assert race(command, processes=4, rounds=12) == ["claimed"] * 12
        assert RedisJobStore(redis_server.url, "race:jobs").get("race").last_due == T0 + 11 * MINUTE


def test_error_text_limit():
    """An error text is cut to MAX_ERROR_CHARS, so a traceback cannot bloat the store."""
    assert len(run(error="e" * 10000).error) == _jobstores_core.MAX_ERROR_CHARS
