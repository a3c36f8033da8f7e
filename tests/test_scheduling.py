"""
JobRunner job control, misfires, per-job options and job stores (issue 17), on FakeClock.
"""

import datetime
import random

import gevent
import pytest
import zope.event
from _redis_server import redis_server  # noqa: F401  (fixture)
from gevent.event import Event

from greenworks import _greenlets
from greenworks.events import JobSkipped
from greenworks.exceptions import (
    DeadlineExceeded,
    InvalidArgument,
    InvalidScheduleError,
    JobExistsError,
    JobLookupError,
    SkippedDuplicateError,
)
from greenworks.jobs import JobRunner
from greenworks.jobstores import MemoryJobStore, RedisJobStore, SQLiteJobStore
from greenworks.schedules import At, Cron, Every, Interval
from greenworks.testing import FakeClock, settle

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes=0, seconds=0, hours=0):
    return T0 + datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds)


@pytest.fixture
def runners(clock):
    """Build JobRunners (on the test's FakeClock unless told otherwise) and stop them all afterwards."""
    made = []

    def factory(**kwargs):
        kwargs.setdefault("clock", clock)
        runner = JobRunner(**kwargs)
        made.append(runner)
        return runner

    yield factory
    for runner in made:
        runner.stop(timeout=5)


@pytest.fixture
def skipped():
    """Every JobSkipped as (job_id, due, reason), collected through zope.event."""
    seen = []

    def subscriber(event):
        if isinstance(event, JobSkipped):
            seen.append((event.job_id, event.tick.astimezone(UTC), event.reason))

    zope.event.subscribers.append(subscriber)
    yield seen
    zope.event.subscribers.remove(subscriber)


class Calls:
    """A job function recording the clock's time of every call."""

    def __init__(self, clock):
        self.clock = clock
        self.times = []
        self.ran = Event()

    def __call__(self, *args, **kwargs):
        self.times.append(self.clock.now(UTC))
        self.ran.set()
        return args or kwargs or None


def results(runner):
    out = []
    while len(runner.results):
        out.extend(runner.results.get_nowait().items)
    return out


class TestJobControl:
    def test_add_get_remove(self, clock, runners):
        """add_job returns the Job; get_job, get_jobs, remove_job; a duplicate id raises JobExistsError."""
        r = runners()
        calls = Calls(clock)
        job = r.add_job(calls, Every(minutes=1), id="a", args=("x",), kwargs={"k": 1})
        assert r.get_job("a") is job and r.get_jobs() == [job]
        assert r.next_run_time("a") == at(1)
        with pytest.raises(JobExistsError, match="'a' exists"):
            r.add_job(calls, Every(minutes=1), id="a")
        clock.advance(60)
        assert calls.times == [at(1)] and results(r)[0].value == ("x",)
        other = r.add_job(calls, Every(minutes=2), id="a", replace_existing=True)
        assert r.get_jobs() == [other] and r.next_run_time("a") == at(2)
        r.remove_job("a")
        assert r.get_job("a") is None and r.get_jobs() == []
        with pytest.raises(JobLookupError):
            r.remove_job("a")
        with pytest.raises(JobLookupError):
            r.next_run_time("a")

    def test_decorator_and_default_id(self, clock, runners):
        """@runner.scheduled adds the function (id defaults to its qualified name) and returns it."""
        r = runners()
        seen = []

        @r.scheduled(Every(minutes=1))
        def beat():
            seen.append(clock.now(UTC))

        assert callable(beat) and r.get_job(beat.__qualname__).fn is beat
        clock.advance(120)
        assert seen == [at(1), at(2)]

    def test_set_jobs_refuses_duplicate_ids(self, clock, runners):
        """set_jobs() replaces the whole set and refuses two jobs with one id."""
        from greenworks.jobs import job

        r = runners()
        with pytest.raises(InvalidArgument, match="unique job ids"):
            r.set_jobs([job("a", lambda: 1), job("a", lambda: 2)])
        r.set_jobs([job("a", lambda: 1), job("b", lambda: 2)])
        r.set_jobs([job("b", lambda: 2)])
        assert [j.id for j in r.get_jobs()] == ["b"]

    def test_pause_and_resume_a_job(self, clock, runners, skipped):
        """pause_job: its due times pass unrun and are reported; resume_job: next due after now."""
        r = runners()
        calls = Calls(clock)
        r.add_job(calls, Every(minutes=1), id="a")
        r.pause_job("a")
        assert r.next_run_time("a") is None
        clock.advance(150)
        assert calls.times == [] and r.snapshot()["jobs"][0]["paused"] is True
        r.resume_job("a")
        assert r.next_run_time("a") == at(3)
        clock.advance(30)
        assert calls.times == [at(3)]

    def test_pause_the_whole_runner(self, clock, runners, skipped):
        """pause() holds every job, each due time reported as "paused"; resume() runs the next ones."""
        r = runners()
        calls = Calls(clock)
        r.add_job(calls, Every(minutes=1), id="a")
        r.pause()
        clock.advance(60)
        assert calls.times == [] and skipped == [("a", at(1), "paused")] and r.paused
        r.resume()
        clock.advance(60)
        assert calls.times == [at(2)]

    def test_run_job_now_respects_max_instances(self, clock, runners):
        """run_job_now runs outside the schedule, but never past max_instances."""
        r = runners()
        gate = Event()
        r.add_job(gate.wait, Every(hours=1), id="slow")
        first = r.run_job_now("slow")
        settle()
        second = r.run_job_now("slow").get(timeout=5)
        assert isinstance(second.items[0].error, SkippedDuplicateError)
        gate.set()
        assert first.get(timeout=5).items[0].error is None
        with pytest.raises(JobLookupError):
            r.run_job_now("nope")


class TestSchedules:
    def test_every_off_the_tick_fires_exactly(self, clock, runners):
        """[issue 14 item 5] Every(seconds=30) on a 60 s tick runs every 30 s; an offset of 90 s is kept."""
        r = runners(tick=60)
        halves, offset = Calls(clock), Calls(clock)
        r.add_job(halves, Every(seconds=30), id="halves")
        r.add_job(offset, Every(minutes=5, offset=90), id="offset")
        clock.advance(6 * 60 + 40)
        assert halves.times == [at(0, 30 * i) for i in range(1, 14)]
        assert offset.times == [at(1, 30), at(6, 30)]

    def test_hourly_jobs_wake_the_runner_hourly(self, clock, runners):
        """1,000 hourly jobs arm one timer and wake the runner once an hour, not every tick."""
        r = runners(tick=1)
        calls = Calls(clock)
        for i in range(1000):
            r.add_job(calls, Every(hours=1), id="j%d" % i)
        settle()
        assert clock.sleepers == 1 and clock.next_deadline() == pytest.approx(1000.0 + 3600)
        clock.advance(3600)
        assert len(calls.times) == 1000

    def test_interval_counts_from_its_start(self, clock, runners):
        """Interval(45) runs 45 s after it was added, then every 45 s, whatever the tick."""
        clock.advance(10)
        r = runners()
        calls = Calls(clock)
        r.add_job(calls, Interval(45), id="i")
        clock.advance(100)
        assert calls.times == [at(0, 55), at(1, 40)]

    def test_at_runs_once_and_is_removed(self, clock, runners):
        """At(when) runs at that time once; the job is gone afterwards."""
        r = runners()
        calls = Calls(clock)
        r.add_job(calls, At(at(2)), id="once")
        clock.advance(600)
        assert calls.times == [at(2)] and r.get_job("once") is None

    def test_at_in_the_past(self, clock, runners):
        """An At past its grace is refused at add_job; one within grace runs at once."""
        clock.advance(600)
        r = runners()
        with pytest.raises(InvalidScheduleError, match="beyond misfire_grace_time"):
            r.add_job(noop, At(at(5)), id="late", misfire_grace_time=60)
        calls = Calls(clock)
        r.add_job(calls, At(at(5)), id="late", misfire_grace_time=600)
        settle()
        assert calls.times == [at(10)]

    def test_cron_in_a_zone(self, clock, runners):
        """A Cron with its own zone fires at that zone's wall time."""
        zone = pytest.importorskip("zoneinfo").ZoneInfo("Europe/Berlin")
        r = runners()
        calls = Calls(clock)
        r.add_job(calls, Cron("30 2 * * *", timezone=zone), id="c")
        clock.advance(2 * 3600)
        assert calls.times == [at(hours=1, minutes=30)]  # 02:30 in Berlin is 01:30 UTC in winter


def noop():
    return None


class TestMisfires:
    @pytest.mark.parametrize(
        ("grace", "coalesce", "runs", "misfired"),
        [
            (None, True, [5], []),
            (None, False, [1, 2, 3, 4, 5], []),
            (90, True, [5], [1, 2, 3]),
            (90, False, [4, 5], [1, 2, 3]),
        ],
    )
    def test_a_stalled_hub(self, clock, runners, skipped, grace, coalesce, runs, misfired):
        """Due times missed while the hub was blocked: older than grace are skipped and reported,
        within grace coalesce=True runs once (the latest), coalesce=False each."""
        r = runners()
        calls = Calls(clock)
        r.add_job(
            calls, Every(minutes=1), id="m", misfire_grace_time=grace, coalesce=coalesce, max_instances=None
        )
        clock.advance(30)
        clock.stall(300)  # now 00:05:30
        assert [item.started_at for item in results(r)] == [at(5, 30)] * len(runs)
        assert sorted(r.stats()["misfired_total"] for _ in [0]) == [len(misfired)]
        assert [s for s in skipped if s[2] == "misfired"] == [("m", at(n), "misfired") for n in misfired]
        assert r.snapshot()["jobs"][0]["misfires"] == len(misfired)
        assert r.next_run_time("m") == at(6)


class TestPerJob:
    def test_max_instances(self, clock, runners, skipped):
        """max_instances=1 skips a due time while the previous run goes on; 2 lets two run."""
        r = runners()
        gate = Event()
        r.add_job(gate.wait, Every(minutes=1), id="one")
        r.add_job(gate.wait, Every(minutes=1), id="two", max_instances=2)
        clock.advance(120)
        assert ("one", at(2), "max_instances") in skipped
        assert not [s for s in skipped if s[0] == "two"]
        assert r.snapshot()["jobs"][1]["running"] == 2
        gate.set()

    def test_jitter_is_exact_under_a_seeded_random(self, clock, runners):
        """A run starts jitter * U late, U drawn from the runner's random (seeded: exact)."""
        r = runners(random=random.Random(7))
        expected = random.Random(7).uniform(0.0, 10.0)
        calls = Calls(clock)
        r.add_job(calls, Every(minutes=1), id="j", jitter=10)
        clock.advance(60)
        assert calls.times == []
        clock.advance(expected)
        assert calls.times == [at(1) + datetime.timedelta(seconds=expected)]

    def test_timeout_interrupts_a_job_that_ignores_its_ctx(self, clock, runners):
        """A run past timeout (plus a tenth of it, at most 1 s) is interrupted, with a DeadlineExceeded."""
        r = runners()
        r.add_job(lambda: clock.sleep(3600), Every(minutes=1), id="stuck", timeout=10)
        clock.advance(60)
        clock.advance(10.9)
        assert r.stats()["in_flight_jobs"] == 1
        clock.advance(0.1)
        (item,) = results(r)
        assert isinstance(item.error, DeadlineExceeded) and "timeout of 10" in str(item.error)
        assert r.stats()["in_flight_jobs"] == 0

    def test_timeout_reaches_a_job_through_its_ctx(self, clock, runners):
        """A job with a ctx parameter gets a Context with the timeout as deadline."""
        r = runners()

        def polite(ctx):
            ctx.wait()
            ctx.raise_if_done()

        r.add_job(polite, Every(minutes=1), id="polite", timeout=5)
        clock.advance(65)
        (item,) = results(r)
        assert isinstance(item.error, DeadlineExceeded) and item.ended_at == at(1, 5)

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("max_instances", 0),
            ("misfire_grace_time", float("nan")),
            ("jitter", "2"),
            ("timeout", 0),
            ("coalesce", "yes"),
            ("args", 5),
            ("kwargs", [1]),
            ("id", ""),
        ],
    )
    def test_bad_options_name_themselves(self, runners, option, value):
        """Every add_job option is checked, naming itself."""
        with pytest.raises(InvalidArgument, match=option):
            runners().add_job(noop, Every(minutes=1), **{option: value})


class TestStores:
    def _restart(self, store_factory, grace, tmp_stop=(1, 59), tmp_start=(2, 7)):
        """A runner with a 02:00 job stops at *tmp_stop*, another starts at *tmp_start* on the same store."""
        first_clock = FakeClock(start=at(hours=1, minutes=50))
        first = JobRunner(clock=first_clock, store=store_factory())
        calls_first = Calls(first_clock)
        first.add_job(calls_first, Cron("0 2 * * *"), id="nightly", misfire_grace_time=grace)
        first_clock.advance((tmp_stop[0] * 60 + tmp_stop[1] - 110) * 60)
        first.stop(timeout=5)
        clock = FakeClock(start=at(hours=tmp_start[0], minutes=tmp_start[1]))
        second = JobRunner(clock=clock, store=store_factory())
        calls = Calls(clock)
        return calls_first, second, calls, clock

    @pytest.mark.parametrize("kind", ["sqlite", "redis"])
    def test_catch_up_after_a_restart(self, tmp_path, request, kind, skipped):
        """Stopped at 01:59, started at 02:07: grace 10 min runs the 02:00 job once at start;
        grace 5 min skips it and reports it."""
        factory = self._store_factory(tmp_path, request, kind)
        for grace, runs in ((600, 1), (300, 0)):
            _first, second, calls, _clock = self._restart(lambda f=factory, g=grace: f("g%d" % g), grace)
            try:
                second.add_job(calls, Cron("0 2 * * *"), id="nightly", misfire_grace_time=grace)
                if runs:
                    assert calls.ran.wait(timeout=10)
                    assert calls.times == [at(hours=2, minutes=7)]
                else:
                    with gevent.Timeout(10):
                        while ("nightly", at(hours=2), "misfired") not in skipped:
                            gevent.sleep(0.01)
                    assert calls.times == [] and second.stats()["misfired_total"] == 1
                assert second.next_run_time("nightly") == at(hours=26)
            finally:
                second.stop(timeout=5)

    @pytest.mark.parametrize("kind", ["sqlite", "redis"])
    def test_a_run_is_never_repeated_across_a_restart(self, tmp_path, request, kind):
        """The 02:00 run done before a restart at 02:03 is not run again."""
        factory = self._store_factory(tmp_path, request, kind)
        first_clock = FakeClock(start=at(hours=1, minutes=59))
        first = JobRunner(clock=first_clock, store=factory("x"))
        calls = Calls(first_clock)
        first.add_job(calls, Cron("0 2 * * *"), id="nightly")
        first_clock.advance(60)
        assert calls.ran.wait(timeout=10)
        first.stop(timeout=5)
        clock = FakeClock(start=at(hours=2, minutes=3))
        second = JobRunner(clock=clock, store=factory("x"))
        again = Calls(clock)
        try:
            second.add_job(again, Cron("0 2 * * *"), id="nightly")
            settle()
            assert again.times == [] and second.next_run_time("nightly") == at(hours=26)
        finally:
            second.stop(timeout=5)

    def _store_factory(self, tmp_path, request, kind):
        if kind == "sqlite":
            return lambda name: SQLiteJobStore(str(tmp_path / ("%s.sqlite3" % name)))
        server = request.getfixturevalue("redis_server")
        return lambda name: RedisJobStore(server.url, prefix="t:%s" % name)

    def test_a_shared_store_runs_each_due_time_once(self, clock, runners):
        """Two runners sharing one store run each due time once between them."""
        store = MemoryJobStore()
        calls = Calls(clock)
        for name in ("a", "b"):
            runners(store=store, name=name).add_job(calls, Every(minutes=1), id="shared")
        clock.advance(180)
        assert calls.times == [at(1), at(2), at(3)]

    def test_store_must_be_a_job_store(self):
        """store= refuses what is not an IJobStore, naming store."""
        with pytest.raises(InvalidArgument, match="store"):
            JobRunner(store=object())


class TestSnapshot:
    def test_job_fields(self, clock, runners):
        """snapshot()["jobs"]: schedule text, next run, last run, paused, running, misfires."""
        r = runners()
        r.add_job(noop, Every(minutes=5), id="five")
        clock.advance(300)
        (job,) = r.snapshot()["jobs"]
        assert job["schedule"] == "every 5m" and job["next_run"] == at(10).isoformat()
        assert job["last_run"]["at"] == at(5).isoformat() and job["last_run"]["outcome"] == "ok"
        assert (job["paused"], job["running"], job["misfires"]) == (False, 0, 0)
        assert _greenlets.alive()
