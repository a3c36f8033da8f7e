"""Tests for greenworks.jobs: the JobRunner (seed 003, Sotaneum/go-runner) and its schedules.

Time moves only through a FakeClock; no test waits for a real minute. Checklist
conformance tests start their docstring with "[MATCH]" or "[FIX]".
"""

import datetime
import json
import logging
import queue
import sys
from zoneinfo import ZoneInfo

import gevent
import pytest
from gevent.event import AsyncResult, Event
from gevent.queue import Queue
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from greenworks import _greenlets
from greenworks.exceptions import InvalidArgument, ReentrantStopError
from greenworks.interfaces import IJob, IJobRunner, ILeaderLock, IStatusSource
from greenworks.jobs import (
    Cron,
    Every,
    InvalidScheduleError,
    Job,
    JobRunner,
    PanicError,
    Result,
    ShuttingDownError,
    SkippedDuplicateError,
    job,
)
from greenworks.testing import FakeClock, settle

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 1, 1, tzinfo=UTC)


def minute(n):
    return T0 + datetime.timedelta(minutes=n)


class Recorder:
    """A job that records the times it ran (clock time) and returns its id."""

    def __init__(self, id, clock, due=True, value=None):
        self.id = id
        self.clock = clock
        self.due = due
        self.value = id if value is None else value
        self.runs = []
        self.asked = []

    def get_id(self):
        return self.id

    def is_run(self, now):
        self.asked.append(now)
        return self.due(now) if callable(self.due) else self.due

    def run(self):
        self.runs.append(self.clock.now())
        return self.value


class Gated:
    """A job whose run() blocks until its gate opens; ``started`` is set when it begins."""

    def __init__(self, id, gate, value=None):
        self.id = id
        self.gate = gate
        self.value = id if value is None else value
        self.started = Event()
        self.calls = 0

    def get_id(self):
        return self.id

    def is_run(self, now):
        return True

    def run(self):
        self.calls += 1
        self.started.set()
        self.gate.wait()
        return self.value


class Sleeper:
    """A job that sleeps on the fake clock and tracks how many run at once."""

    active = 0
    peak = 0

    def __init__(self, id, clock, seconds, counter):
        self.id, self.clock, self.seconds, self.counter = id, clock, seconds, counter

    def get_id(self):
        return self.id

    def is_run(self, now):
        return True

    def run(self):
        self.counter["active"] += 1
        self.counter["peak"] = max(self.counter["peak"], self.counter["active"])
        try:
            self.clock.sleep(self.seconds)
        finally:
            self.counter["active"] -= 1
        return self.id


@pytest.fixture
def runners(clock):
    """A factory of JobRunners on the fake clock; all are stopped (gates opened) after the test."""
    made = []
    gates = []

    def make(*args, **kwargs):
        kwargs.setdefault("clock", clock)
        r = JobRunner(*args, **kwargs)
        made.append(r)
        return r

    make.gate = lambda: gates.append(Event()) or gates[-1]
    yield make
    for gate in gates:
        gate.set()
    for r in made:
        assert r.stop_and_wait(timeout=60)


def drain(r):
    out = []
    while True:
        try:
            out.append(r.results.get_nowait())
        except queue.Empty:
            return out


def runner_greenlets():
    return sorted(g.name for g in _greenlets.alive() if g.name.startswith("greenworks.jobs["))


class TestInterfaces:
    def test_job_runner_provides_ijobrunner(self, runners):
        """JobRunner implements IJobRunner, attributes included."""
        assert verifyClass(IJobRunner, JobRunner)
        assert verifyObject(IJobRunner, runners())
        assert verifyObject(IStatusSource, runners(name="status"))

    def test_job_provides_ijob(self):
        """The Job helper implements IJob."""
        assert verifyClass(IJob, Job)
        assert verifyObject(IJob, job("a", lambda: 1))

    def test_in_test_locks_provide_ileaderlock(self):
        """The locks these tests use satisfy ILeaderLock."""
        assert verifyObject(ILeaderLock, FlakyLock())
        assert verifyObject(ILeaderLock, SplitBrainLock({}))


class TestConstruction:
    def test_default_limit_is_50(self, runners):
        """[MATCH] NewRunner uses limit 50."""
        assert runners().limit == 50

    def test_default_limit_is_50_and_none_means_no_limit(self, clock, runners):
        """The default limit is 50; limit=None runs every due job at once (no slot is waited for)."""
        assert runners().limit == 50
        r = runners(None, None)
        gate = runners.gate()
        jobs = [Gated("g%d" % i, gate) for i in range(120)]
        handle = r.push_and_await(jobs)
        settle()
        assert r.limit is None and all(j.started.is_set() for j in jobs)
        gate.set()
        assert len(handle.get().items) == 120

    def test_source_that_is_not_a_queue_raises(self):
        """[MATCH] A missing runnerCh raises: here source=None is the internal FIFO, a non-queue raises."""
        with pytest.raises(InvalidArgument, match=r"source .*'not a queue'"):
            JobRunner("not a queue")

    @pytest.mark.parametrize(
        "kwargs, name",
        [
            ({"limit": "3"}, "limit"),
            ({"limit": True}, "limit"),
            ({"batch_buffer": 2.5}, "batch_buffer"),
            ({"results_buffer": 0}, "results_buffer"),
            ({"tick": 0}, "tick"),
            ({"tick": -60}, "tick"),
            ({"tick": "60"}, "tick"),
            ({"timezone": "Asia/Seoul"}, "timezone"),
            ({"on_panic": 3}, "on_panic"),
            ({"on_skip": "x"}, "on_skip"),
            ({"leader": object()}, "leader"),
            ({"leader_ttl": 0}, "leader_ttl"),
            ({"name": ""}, "name"),
        ],
    )
    def test_bad_arguments_name_the_argument_and_value(self, clock, kwargs, name):
        """Bad options fail at construction with an InvalidArgument naming the option and value."""
        with pytest.raises(InvalidArgument) as info:
            JobRunner(clock=clock, **kwargs)
        assert str(info.value).startswith(name + " must be")
        assert repr(next(iter(kwargs.values())))[:10] in str(info.value)

    @pytest.mark.parametrize("n", [1, 10])
    def test_batch_buffer_reported(self, runners, n):
        """[MATCH] with_batch_buffer(n): stats()["batch_queue_capacity"] == n."""
        assert runners(batch_buffer=n).stats()["batch_queue_capacity"] == n

    @pytest.mark.parametrize(
        ("kwargs", "name"),
        [
            ({"batch_buffer": 0}, "batch_buffer"),
            ({"limit": 0}, "limit"),
            ({"limit": -1}, "limit"),
            ({"limit": 2.0}, "limit"),
        ],
    )
    def test_counts_below_one_are_refused(self, kwargs, name):
        """[issue 14 item 9] limit and batch_buffer below 1 raise instead of silently meaning 50 or 1."""
        with pytest.raises(InvalidArgument, match=name):
            JobRunner(**kwargs)

    def test_stats_snapshot_defaults(self, runners):
        """[MATCH] A fresh runner: capacity 64, results keep 8, no depth, nothing in flight."""
        r = runners()
        s = r.stats()
        assert isinstance(s, dict) and all(type(v) is int for v in s.values())
        assert (s["batch_queue_capacity"], s["batch_queue_depth"], s["in_flight_jobs"]) == (64, 0, 0)
        assert r.results.maxsize == 8
        assert r.in_flight_ids() == []


class TestTicks:
    def test_ticks_fall_on_second_zero(self):
        """[MATCH] Ticks fire at wall-clock minute boundaries, whatever second the runner started on."""
        clock = FakeClock(start=T0 + datetime.timedelta(seconds=25))
        r = JobRunner(clock=clock)
        try:
            rec = Recorder("a", clock)
            r.set_jobs([rec])
            clock.advance(34.9)
            assert rec.runs == []
            clock.advance(0.1)
            assert rec.runs == [minute(1)]
            clock.advance(60)
            assert rec.runs == [minute(1), minute(2)]
        finally:
            r.stop_and_wait()

    def test_polled_jobs_follow_every_change_to_the_set(self, clock, runners):
        """Each tick asks the polled jobs as they are now: reordered, paused, resumed, removed, added."""
        r = runners(None, 1)  # one at a time: runs are in the order the jobs were asked
        order = []

        class Asked(Recorder):
            def is_run(self, now):
                order.append(self.id)
                return True

        a, b, c = (Asked(i, clock) for i in "abc")
        r.set_jobs([a, b, c])
        clock.advance(60)
        settle()
        assert order == ["a", "b", "c"]
        checks = [
            (lambda: r.set_jobs([c, a, b]), ["c", "a", "b"]),
            (lambda: r.pause_job("a"), ["c", "b"]),
            (lambda: r.resume_job("a"), ["c", "a", "b"]),
            (lambda: r.remove_job("c"), ["a", "b"]),
            (lambda: r.set_jobs([a, b, Asked("d", clock)]), ["a", "b", "d"]),
        ]
        for change, expected in checks:
            change()
            del order[:]
            clock.advance(60)
            settle()
            assert order == expected

    def test_each_tick_takes_at_most_one_batch(self, clock, runners):
        """[MATCH] Each tick takes at most one batch from the FIFO, oldest first."""
        r = runners()
        recs = [Recorder(str(i), clock) for i in range(3)]
        for rec in recs:
            assert r.push([rec])
        assert r.stats()["batch_queue_depth"] == 3
        clock.advance(60)
        assert [len(rec.runs) for rec in recs] == [1, 0, 0]
        assert r.stats()["batch_queue_depth"] == 2
        clock.advance(60)
        assert [len(rec.runs) for rec in recs] == [1, 1, 0]

    def test_tick_with_empty_fifo_does_nothing(self, clock, runners):
        """[MATCH] A tick with an empty FIFO (and no standing set) yields no Result: the runner does
        not even wake (no timer is armed) until something is pushed or added."""
        r = runners()
        clock.advance(180)
        assert drain(r) == []
        assert r.snapshot()["last_tick"] is None and r.snapshot()["next_tick"] is None
        assert clock.sleepers == 0

    def test_batch_is_used_up_by_its_tick(self, clock, runners):
        """[MATCH] A pushed batch runs on one tick and is not re-run on later ticks."""
        r = runners()
        rec = Recorder("a", clock)
        r.push([rec])
        clock.advance(60 * 5)
        assert rec.runs == [minute(1)]
        assert len(drain(r)) == 1

    def test_is_run_gets_tick_time_cut_to_minute_in_timezone(self, clock, runners):
        """[MATCH] is_run(now) gets the tick time cut to the minute, aware, in the configured zone."""
        seoul = ZoneInfo("Asia/Seoul")
        r = runners(timezone=seoul)
        rec = Recorder("a", clock)
        r.set_jobs([rec])
        clock.advance(61.5)
        (now,) = rec.asked
        assert now == minute(1)
        assert now.tzinfo is seoul
        assert (now.hour, now.second, now.microsecond) == (9, 0, 0)

    def test_default_timezone_is_the_clocks_zone(self, runners):
        """is_run's now is in the clock's zone when timezone=None (Go hard-codes Asia/Seoul; we do not)."""
        tz = datetime.timezone(datetime.timedelta(hours=-5))
        clock = FakeClock(tz=tz)
        r = runners(clock=clock)
        rec = Recorder("a", clock)
        r.set_jobs([rec])
        clock.advance(60)
        assert rec.asked[0].utcoffset() == datetime.timedelta(hours=-5)
        assert rec.asked[0] == minute(1)

    def test_sub_minute_tick_passes_exact_boundaries(self, clock, runners):
        """With tick=15 is_run sees :15, :30, :45, :00 (not cut to the minute, so jobs do not repeat)."""
        r = runners(tick=15)
        rec = Recorder("a", clock)
        r.set_jobs([rec])
        clock.advance(60)
        assert [t.second for t in rec.asked] == [15, 30, 45, 0]

    def test_filtered_jobs_left_out_and_empty_batch_still_yields_result(self, clock, runners):
        """[MATCH] Jobs with is_run False are left out; an all-filtered batch still yields an empty Result."""
        r = runners()
        r.push([Recorder("yes", clock), Recorder("no", clock, due=False)])
        r.push([Recorder("no2", clock, due=False)])
        clock.advance(120)
        first, second = drain(r)
        assert [i.id for i in first.items] == ["yes"]
        assert second.items == [] and second.at == minute(2)

    def test_missed_ticks_counted_and_run_once(self, clock, runners, caplog):
        """A hub blocked past several boundaries runs the next tick once and counts the missed ones."""
        r = runners()
        blocked = []

        def due(now):
            if not blocked:
                blocked.append(now)
                # A CPU-bound hub: 5 minutes pass while the tick greenlet is busy.
                clock.advance(300)
            return True

        rec = Recorder("a", clock, due=due)
        r.set_jobs([rec])
        with caplog.at_level(logging.WARNING, logger="greenworks.jobs"):
            clock.advance(60)
            # The nested advance() leaves the tick greenlet mid-tick: wait until it sleeps again.
            assert clock.wait_for_sleepers(1)
        assert r.stats()["missed_ticks_total"] == 4
        assert rec.asked == [minute(1), minute(6)]
        assert [m.getMessage() for m in caplog.records if "missed" in m.getMessage()] == [
            "job runner 'jobs' missed 4 tick(s): the hub was busy past their boundaries; ran once"
        ]
        clock.advance(60)
        assert rec.asked[-1] == minute(7)
        assert r.stats()["missed_ticks_total"] == 4


class TestExecution:
    def test_jobs_in_a_batch_run_concurrently(self, clock, runners):
        """[MATCH] 10 jobs of 100 ms finish in under 200 ms with limit >= 10."""
        r = runners()
        counter = {"active": 0, "peak": 0}
        r.push([Sleeper(str(i), clock, 0.1, counter) for i in range(10)])
        clock.advance(60)
        clock.advance(0.1)
        (res,) = drain(r)
        assert len(res.items) == 10 and counter["peak"] == 10
        assert res.ended_at - res.at < datetime.timedelta(seconds=0.2)

    def test_limit_respected(self, clock, runners):
        """[MATCH] limit 3 and 10 jobs: never more than 3 run at once."""
        r = runners(None, 3)
        counter = {"active": 0, "peak": 0}
        r.push([Sleeper(str(i), clock, 1.0, counter) for i in range(10)])
        clock.advance(60)
        assert r.stats()["in_flight_jobs"] == 3
        clock.advance(10)
        (res,) = drain(r)
        assert counter["peak"] == 3 and len(res.items) == 10
        assert res.ended_at - res.at == datetime.timedelta(seconds=4)

    def test_limit_is_global_across_overlapping_batches(self, clock, runners):
        """[MATCH] Two overlapping batches of 10 with limit 3 never run more than 3 jobs at once."""
        r = runners(None, 3)
        counter = {"active": 0, "peak": 0}
        a = r.push_and_await([Sleeper("a%d" % i, clock, 1.0, counter) for i in range(10)])
        b = r.push_and_await([Sleeper("b%d" % i, clock, 1.0, counter) for i in range(10)])
        settle()
        clock.advance(20)
        assert counter["peak"] == 3
        assert len(a.get().items) == len(b.get().items) == 10

    def test_slow_batch_does_not_block_next(self, clock, runners):
        """[MATCH] With limit 1 a second batch is taken on the next tick while the first still runs."""
        r = runners(None, 1)
        gate = runners.gate()
        slow = Gated("slow", gate)
        r.push([slow])
        r.push([Recorder("next", clock)])
        clock.advance(60)
        assert slow.started.is_set()
        clock.advance(60)
        assert r.stats()["batch_queue_depth"] == 0
        gate.set()
        settle()
        ids = sorted(i.id for res in drain(r) for i in res.items)
        assert ids == ["next", "slow"]

    def test_result_collection(self, clock, runners):
        """[MATCH] 100 jobs give 100 items whose value is the job's id."""
        r = runners()
        r.push([Recorder("j%d" % i, clock) for i in range(100)])
        clock.advance(60)
        (res,) = drain(r)
        expected = sorted(("j%d" % i, "j%d" % i) for i in range(100))
        assert sorted((i.id, i.value) for i in res.items) == expected

    def test_value_and_returned_error(self, clock, runners):
        """[MATCH] A returned value fills value; a returned exception (Go's nil, err) fills error only."""
        r = runners()
        err = OSError("disk")
        res = r.push_and_await([job("ok", lambda: 42), job("bad", lambda: err)]).get()
        by = res.by_id()
        assert (by["ok"].value, by["ok"].error) == (42, None)
        assert by["bad"].error is err and by["bad"].value is None

    def test_raising_job_becomes_panic_error(self, clock, runners):
        """[MATCH] run() raising gives a PanicError (id, recovered, stack), value None; others unaffected."""
        calls = []
        r = runners(on_panic=lambda *a: calls.append(a))
        boom = ValueError("boom")

        def bad():
            raise boom

        res = r.push_and_await([job("a", lambda: 1), job("bad", bad), job("c", lambda: 3)]).get()
        by = res.by_id()
        err = by["bad"].error
        assert isinstance(err, PanicError) and err.id == "bad" and err.recovered is boom
        assert "ValueError: boom" in err.stack and by["bad"].value is None
        assert (by["a"].value, by["c"].value) == (1, 3)
        assert calls == [("bad", boom, err.stack)]

    def test_panic_error_unwraps_and_formats(self):
        """[MATCH] PanicError unwraps to the original (__cause__) and str() is Go's message."""
        cause = EOFError("eof")
        err = PanicError("demo", cause, "stack")
        assert err.__cause__ is cause
        assert str(err) == 'runner: job "demo" panicked: eof'

    def test_job_greenlets_are_named(self, clock, runners):
        """Each running job has a tracked greenlet named greenworks.jobs[<id>]."""
        r = runners()
        gate = runners.gate()
        r.set_jobs([Gated("report", gate)])
        clock.advance(60)
        assert "greenworks.jobs[report]" in runner_greenlets()
        assert "greenworks.jobs[jobs:tick]" in runner_greenlets()


class TestDedupe:
    def test_duplicate_in_batch_is_skipped(self, clock, runners):
        """[MATCH] With dedupe [dup, dup, uniq] runs dup once, the other dup gets a SkippedDuplicateError."""
        skipped = []
        r = runners(dedupe=True, on_skip=skipped.append)
        gate = runners.gate()
        dup1, dup2, uniq = Gated("dup", gate), Gated("dup", gate), Gated("uniq", gate)
        handle = r.push_and_await([dup1, dup2, uniq])
        settle()
        gate.set()
        res = handle.get()
        assert len(res.items) == 3
        errs = [i.error for i in res.items if i.id == "dup"]
        assert sum(isinstance(e, SkippedDuplicateError) for e in errs) == 1 and errs.count(None) == 1
        skip = next(i for i in res.items if isinstance(i.error, SkippedDuplicateError))
        assert skip.started_at == skip.ended_at
        assert dup1.calls + dup2.calls + uniq.calls == 2
        assert r.stats()["dedupe_skips_total"] == 1 and skipped == ["dup"]

    def test_duplicate_across_ticks_is_skipped(self, clock, runners):
        """[MATCH] A standing job still running from the previous tick is skipped, not run twice."""
        r = runners(dedupe=True)
        gate = runners.gate()
        slow = Gated("slow", gate)
        r.set_jobs([slow])
        clock.advance(120)
        assert slow.calls == 1
        (skipped,) = drain(r)
        assert isinstance(skipped.items[0].error, SkippedDuplicateError) and skipped.at == minute(2)

    def test_without_dedupe_duplicates_run(self, clock, runners):
        """Without dedupe the same id runs twice at once and in_flight_ids stays empty."""
        r = runners()
        gate = runners.gate()
        a, b = Gated("x", gate), Gated("x", gate)
        r.push_and_await([a, b])
        settle()
        assert a.calls == b.calls == 1
        assert r.in_flight_ids() == []

    def test_in_flight_ids(self, clock, runners):
        """[MATCH] in_flight_ids lists running ids while blocked (and ones waiting for a slot), [] after."""
        r = runners(None, 2, dedupe=True)
        gate = runners.gate()
        handle = r.push_and_await([Gated("a", gate), Gated("b", gate), Gated("c", gate)])
        settle()
        assert r.in_flight_ids() == ["a", "b", "c"]
        assert r.stats()["in_flight_jobs"] == 2
        gate.set()
        handle.get()
        assert r.in_flight_ids() == []


class TestStats:
    def test_stats_gauges_and_counters(self, clock, runners):
        """[MATCH] stats(): in_flight_jobs counts running jobs only, batch_queue_depth the FIFO."""
        r = runners(None, 2, dedupe=True)
        gate = runners.gate()
        r.push_and_await([Gated("a", gate), Gated("a", gate), Gated("b", gate), Gated("c", gate)])
        r.push([Recorder("q", clock)])
        settle()
        s = r.stats()
        assert (s["in_flight_jobs"], s["batch_queue_depth"], s["dedupe_skips_total"]) == (2, 1, 1)
        assert r.in_flight_ids() == ["a", "b", "c"]
        gate.set()
        settle()
        s = r.stats()
        assert (s["in_flight_jobs"], s["batch_queue_depth"], s["dedupe_skips_total"]) == (0, 1, 1)


class TestResults:
    def test_result_helpers(self):
        """[MATCH] by_id (last wins), errors (every error, sentinels too), panic_errors (same objects)."""
        p = PanicError("p", RuntimeError("x"))
        skip = SkippedDuplicateError()
        from greenworks.jobs import JobResult

        res = Result(
            minute(0),
            [
                JobResult("a", 1),
                JobResult("a", 2),
                JobResult("s", error=skip),
                JobResult("p", error=p),
            ],
        )
        assert res.by_id()["a"].value == 2
        assert res.errors() == {"s": skip, "p": p}
        assert res.panic_errors() == {"p": p} and res.panic_errors()["p"] is p

    def test_overflow_drops_oldest(self, clock, runners):
        """[MATCH] With room for 2, results a, b, c leave [b, c] and dropped_results_total == 1."""
        r = runners(results_buffer=2)
        for name in "abc":
            r.push_and_await([job(name, lambda: 1)]).get()
        assert [res.items[0].id for res in drain(r)] == ["b", "c"]
        assert r.stats()["dropped_results_total"] == 1

    def test_items_in_completion_order_or_input_order(self, clock, runners):
        """Items are in completion order by default and in input order with input_order=True."""
        counter = {"active": 0, "peak": 0}

        def batch():
            return [Sleeper(str(i), clock, 3 - i, counter) for i in range(3)]

        default, ordered = runners(), runners(input_order=True, name="ordered")
        h1, h2 = default.push_and_await(batch()), ordered.push_and_await(batch())
        settle()
        clock.advance(5)
        assert [i.id for i in h1.get().items] == ["2", "1", "0"]
        assert [i.id for i in h2.get().items] == ["0", "1", "2"]

    def test_iteration_ends_after_wait(self, clock, runners):
        """[MATCH] Iterating results yields every Result and ends once wait() closed the stream."""
        r = runners()
        got = AsyncResult()
        consumer = gevent.spawn(lambda: got.set([res.at for res in r.results]))
        r.set_jobs([Recorder("a", clock)])
        clock.advance(120)
        assert not got.ready()
        assert r.wait() is True
        consumer.join()
        assert got.get() == [minute(1), minute(2)]
        assert r.results.closed

    def test_get_times_out_on_the_clock(self, clock, runners):
        """results.get(timeout) raises queue.Empty when nothing arrives within the (fake) timeout."""
        r = runners()
        out = AsyncResult()

        def consume():
            try:
                r.results.get(timeout=5)
            except queue.Empty:
                out.set("empty")

        g = gevent.spawn(consume)
        clock.wait_for_sleepers(2)
        clock.advance(5)
        g.join()
        assert out.get() == "empty"


class TestPush:
    def test_push_delivers(self, clock, runners):
        """[MATCH] push returns True and the batch is queued."""
        r = runners()
        assert r.push([Recorder("a", clock)]) is True
        assert r.stats()["batch_queue_depth"] == 1

    def test_push_backpressure_exactly_n(self, clock, runners):
        """[MATCH] batch_buffer=2: two pushes return at once, the third blocks until a tick frees a slot.

        Go lets n+1 through (its ingest goroutine holds one); push() here puts straight into the FIFO.
        """
        r = runners(batch_buffer=2)
        assert r.push([Recorder("a", clock)]) and r.push([Recorder("b", clock)])
        third = gevent.spawn(r.push, [Recorder("c", clock)])
        settle()
        assert not third.ready()
        clock.advance(60)
        third.join()
        assert third.value is True and r.stats()["batch_queue_depth"] == 2

    def test_source_ingest_holds_one_more_like_go(self, clock, runners):
        """[MATCH] With source= and batch_buffer=2, 3 batches leave the source (Go's n+1), the 4th waits."""
        source = Queue()
        r = runners(source, batch_buffer=2)
        recs = [Recorder(str(i), clock) for i in range(4)]
        for rec in recs:
            source.put([rec])
        settle()
        assert source.qsize() == 1 and r.stats()["batch_queue_depth"] == 2
        clock.advance(60 * 4)
        assert [rec.runs for rec in recs] == [[minute(i + 1)] for i in range(4)]

    def test_bad_source_items_do_not_kill_the_runner(self, clock, runners, caplog):
        """A non-iterable batch from source is logged and skipped; StopIteration ends ingesting only."""
        source = Queue()
        runners(source)
        rec = Recorder("a", clock)
        with caplog.at_level(logging.ERROR, logger="greenworks.jobs"):
            source.put(42)
            source.put([rec])
            source.put(StopIteration)
            settle()
        assert "greenworks.jobs[jobs:ingest]" not in runner_greenlets()
        assert any("non-iterable batch" in m.getMessage() for m in caplog.records)
        clock.advance(60)
        assert rec.runs == [minute(1)]

    def test_stop_counts_the_batch_ingest_holds(self, clock, runners):
        """stop() discards queued batches and the one the ingest greenlet holds, and counts them all."""
        source = Queue()
        r = runners(source, batch_buffer=1)
        for i in range(3):
            source.put([Recorder(str(i), clock)])
        settle()
        r.stop(wait=False)
        assert r.stats()["discarded_batches_total"] == 2 and source.qsize() == 1

    def test_push_timeout(self, clock, runners):
        """push(timeout=) returns False when the FIFO stays full for that long."""
        r = runners(batch_buffer=1)
        r.push([Recorder("a", clock)])
        out = gevent.spawn(r.push, [Recorder("b", clock)], timeout=10)
        clock.wait_for_sleepers(2)
        clock.advance(10)
        out.join()
        assert out.value is False and r.stats()["batch_queue_depth"] == 1

    def test_push_after_stop_and_blocked_push_released_by_stop(self, clock, runners):
        """[MATCH] push returns False after stop(); a push blocked on a full FIFO returns False at stop()."""
        r = runners(batch_buffer=1)
        r.push([Recorder("a", clock)])
        blocked = gevent.spawn(r.push, [Recorder("b", clock)])
        settle()
        r.stop(wait=False)
        blocked.join()
        assert blocked.value is False
        assert r.push([Recorder("c", clock)]) is False
        assert r.stats()["discarded_batches_total"] == 1

    def test_push_rejects_non_jobs(self, runners):
        """push names the offending item of a batch that is not made of jobs."""
        with pytest.raises(InvalidArgument, match=r"batch\[1\] must be"):
            runners().push([job("a", lambda: 1), "oops"])
        with pytest.raises(InvalidArgument, match="jobs must be"):
            runners().set_jobs(3)

    def test_push_and_await_runs_now(self, clock, runners):
        """[MATCH] push_and_await runs at once, asks is_run once (now cut to the minute), posts it too."""
        clock.advance(30)
        r = runners()
        rec = Recorder("a", clock)
        res = r.push_and_await([rec, Recorder("no", clock, due=False)]).get()
        assert rec.asked == [minute(0)] and rec.runs == [minute(0) + datetime.timedelta(seconds=30)]
        assert [i.id for i in res.items] == ["a"]
        assert drain(r) == [res]

    def test_push_and_await_after_stop(self, runners):
        """[MATCH] push_and_await after stop() returns a handle already resolved, with no Result."""
        r = runners()
        r.stop(wait=False)
        handle = r.push_and_await([job("a", lambda: 1)])
        assert handle.ready() and not handle.successful()
        with pytest.raises(ShuttingDownError):
            handle.get()


class TestStop:
    def test_waiting_jobs_get_shutting_down(self, clock, runners):
        """[MATCH] Jobs still waiting for a slot at stop() are not run and get a ShuttingDownError."""
        r = runners(None, 1)
        gate = runners.gate()
        a, b, c = Gated("a", gate), Gated("b", gate), Gated("c", gate)
        handle = r.push_and_await([a, b, c])
        settle()
        r.stop(wait=False)
        assert a.started.is_set()
        gate.set()
        res = handle.get()
        assert res.by_id()["a"].error is None
        assert isinstance(res.by_id()["b"].error, ShuttingDownError)
        assert isinstance(res.by_id()["c"].error, ShuttingDownError)
        assert (b.calls, c.calls) == (0, 0)

    def test_stop_wins_over_a_freed_slot(self, clock, runners):
        """[FIX] A slot freed in the same instant as stop() never starts a waiting job (stop first)."""
        r = runners(None, 1)
        gate = runners.gate()
        a, b = Gated("a", gate), Gated("b", gate)
        handle = r.push_and_await([a, b])
        settle()
        gate.set()  # a may now finish and free its slot ...
        r.stop(wait=False)  # ... but stop() came before b's greenlet ran again
        res = handle.get()
        assert b.calls == 0 and isinstance(res.by_id()["b"].error, ShuttingDownError)

    def test_stop_is_idempotent_synchronous_and_lets_jobs_finish(self, clock, runners):
        """[MATCH] stop() ends the lifecycle greenlets at once, twice is fine, and running jobs carry on."""
        source = Queue()
        r = runners(source)
        gate = runners.gate()
        slow = Gated("slow", gate)
        r.set_jobs([slow])
        clock.advance(60)
        r.stop(wait=False)
        assert runner_greenlets() == ["greenworks.jobs[jobs:batch 1]", "greenworks.jobs[slow]"]
        r.stop(wait=False)
        gate.set()
        assert r.wait() is True
        assert drain(r)[0].items[0].value == "slow"

    def test_stop_and_wait_leaves_nothing(self, clock, runners):
        """[MATCH] stop_and_wait waits for in-flight batches; no runner greenlet is left alive."""
        r = runners(Queue())
        assert runner_greenlets() == ["greenworks.jobs[jobs:ingest]", "greenworks.jobs[jobs:tick]"]
        gate = runners.gate()
        r.set_jobs([Gated("slow", gate)])
        clock.advance(60)
        done = gevent.spawn(r.stop_and_wait)
        settle()
        assert not done.ready()
        gate.set()
        done.join()
        assert done.value is True and runner_greenlets() == [] and r.results.closed

    def test_wait_timeout(self, clock, runners):
        """wait(timeout) returns False while a batch still runs and leaves the results open."""
        r = runners()
        gate = runners.gate()
        r.set_jobs([Gated("slow", gate)])
        clock.advance(60)
        out = gevent.spawn(r.wait, 5)
        clock.wait_for_sleepers(1)
        clock.advance(5)
        out.join()
        assert out.value is False and not r.results.closed

    def test_wait_without_stop_then_later_ticks(self, clock, runners):
        """[FIX] wait() without stop() implies stop(): later ticks never run or post to the closed stream."""
        r = runners()
        rec = Recorder("a", clock)
        r.set_jobs([rec])
        clock.advance(60)
        assert r.wait() is True
        clock.advance(600)
        assert rec.runs == [minute(1)]
        assert len(drain(r)) == 1 and r.stats()["dropped_results_total"] == 0

    def test_stop_from_inside_a_job(self, clock, runners):
        """stop() called by a running job does not deadlock; that job's Result is still delivered."""
        r = runners()
        r.set_jobs([job("stopper", lambda: (r.stop(wait=False), "stopped")[1])])
        clock.advance(60)
        assert r.wait() is True
        assert drain(r)[0].items[0].value == "stopped"

    def test_waiting_stop_from_inside_a_job_raises(self, clock, runners):
        """[issue 14 item 4] stop() (which waits) from a job raises ReentrantStopError, no deadlock."""
        r = runners()
        r.set_jobs([job("stopper", lambda: r.stop())])
        clock.advance(60)
        r.stop(wait=False)
        assert r.wait() is True
        error = drain(r)[0].items[0].error
        assert isinstance(error, PanicError) and isinstance(error.recovered, ReentrantStopError)
        assert "jobs" in str(error.recovered) and "stop()" in str(error.recovered)


class TestRobustness:
    def test_is_run_raising_is_reported_and_runner_continues(self, clock, runners, caplog):
        """[FIX] An exception in is_run is logged once per tick and reported as the job's error."""
        err = KeyError("bad")

        def due(now):
            raise err

        r = runners()
        good = Recorder("good", clock)
        r.set_jobs([Recorder("bad", clock, due=due), good])
        with caplog.at_level(logging.ERROR, logger="greenworks.jobs"):
            clock.advance(120)
        first, _ = drain(r)
        assert first.by_id()["bad"].error is err and first.by_id()["good"].value == "good"
        assert len(good.runs) == 2
        assert len([m for m in caplog.records if "is_run()" in m.getMessage()]) == 2

    def test_is_run_raising_anywhere_asks_every_job_once(self, clock, runners):
        """Raises first, in the middle, twice in a row and last: every other job is still asked once.

        The timetable's jobs are asked in one bare loop that resumes after a
        job that raised; this pins that no job is skipped or asked twice and
        that each error keeps its job's id and input position.
        """

        boom = object()

        def raises_once():
            # Raises when first asked only, so a job asked twice shows in its count
            # instead of looping on the error.
            calls = []

            def due(now):
                calls.append(now)
                if len(calls) == 1:
                    raise ValueError("boom")
                return False

            return due

        plan = [boom, True, False, boom, boom, True, False, True, boom]
        jobs = [
            Recorder("j%d" % i, clock, due=raises_once() if due is boom else due)
            for i, due in enumerate(plan)
        ]
        r = runners(input_order=True)
        r.set_jobs(jobs)
        clock.advance(60)
        (result,) = drain(r)
        assert [len(j.asked) for j in jobs] == [1] * len(plan)
        assert [len(j.runs) for j in jobs] == [0, 1, 0, 0, 0, 1, 0, 1, 0]
        by_id = result.by_id()
        raised = [i for i, due in enumerate(plan) if due is boom]
        assert sorted(by_id) == sorted(["j%d" % i for i in [*raised, 1, 5, 7]])
        for i in raised:
            assert isinstance(by_id["j%d" % i].error, ValueError)
        assert [by_id["j%d" % i].value for i in (1, 5, 7)] == ["j1", "j5", "j7"]

    def test_get_id_raising_is_reported(self, clock, runners):
        """[FIX] An exception in get_id is reported under a placeholder id and the runner goes on."""

        class NoId(Recorder):
            def get_id(self):
                raise RuntimeError("no id")

        r = runners()
        bad = NoId("x", clock)
        res = r.push_and_await([bad, Recorder("ok", clock)]).get()
        assert isinstance(res.by_id()["<NoId>"].error, RuntimeError) and bad.runs == []
        assert res.by_id()["ok"].value == "ok"

    def test_on_skip_and_on_panic_raising_do_not_kill(self, clock, runners):
        """[FIX] Exceptions from on_skip and on_panic are logged; results and later ticks are unaffected."""

        def explode(*args):
            raise RuntimeError("callback")

        def fail():
            raise ValueError("job")

        r = runners(dedupe=True, on_skip=explode, on_panic=explode)
        res = r.push_and_await([job("p", fail), job("d", lambda: 1), job("d", lambda: 2)]).get()
        assert isinstance(res.by_id()["p"].error, PanicError)
        assert sorted(str(i.error) for i in res.items if i.id == "d") == [
            "None",
            "runner: skipped duplicate in-flight job",
        ]
        rec = Recorder("later", clock)
        r.set_jobs([rec])
        clock.advance(60)
        assert rec.runs == [minute(1)]


# -- coordination ---------------------------------------------------------------


@implementer(ILeaderLock)
class FlakyLock:
    """A lone leader lock whose backend can be made to fail."""

    def __init__(self):
        self.is_held = False
        self.holder = "test:1"
        self.broken = False
        self.released = 0

    def _check(self):
        if self.broken:
            raise ConnectionError("backend down")

    def acquire(self, ttl=None):
        self._check()
        self.is_held = True
        return True

    def renew(self):
        self._check()
        return self.is_held

    def release(self):
        self.released += 1
        self.is_held = False

    def claim(self, key, ttl):
        self._check()
        return True


@implementer(ILeaderLock)
class SplitBrainLock:
    """Every instance believes it leads (a lease in transit), but claims are shared."""

    def __init__(self, claims):
        self.claims = claims
        self.is_held = False
        self.holder = "split"

    def acquire(self, ttl=None):
        self.is_held = True
        return True

    def renew(self):
        return True

    def release(self):
        self.is_held = False

    def claim(self, key, ttl):
        if key in self.claims:
            return False
        self.claims[key] = ttl
        return True


class TestLeader:
    def test_only_the_leader_runs_jobs(self, clock, runners):
        """With a shared lease each tick's jobs run once across two 'processes'; the other counts them."""
        from greenworks.coordination import LocalLock

        lock = LocalLock(clock=clock)
        ran = []
        jobs = [job("a", lambda: ran.append(clock.now()))]
        one = runners(leader=lock, name="one")
        two = runners(leader=lock.peer(), name="two")
        one.set_jobs(jobs)
        two.set_jobs(jobs)
        clock.advance(60 * 5)
        assert ran == [minute(n) for n in range(1, 6)]
        assert sorted([one.is_leader, two.is_leader]) == [False, True]
        follower = two if one.is_leader else one
        assert follower.stats()["not_leader_ticks_total"] == 5
        assert follower.snapshot()["is_leader"] is False

    def test_leadership_moves_when_the_leader_stops(self, clock, runners):
        """stop() releases the lease, so the other process leads from the next tick on."""
        from greenworks.coordination import LocalLock

        lock = LocalLock(clock=clock)
        ran = []
        one = runners(leader=lock, name="one")
        two = runners(leader=lock.peer(), name="two")
        for r, tag in ((one, "one"), (two, "two")):
            r.set_jobs([job("a", lambda tag=tag: ran.append(tag))])
        clock.advance(60)
        leader, other = (one, two) if one.is_leader else (two, one)
        leader.stop_and_wait()
        clock.advance(120)
        assert len(ran) == 3 and ran[1:] == [other.name] * 2
        assert other.is_leader

    def test_claims_keep_one_run_per_tick_in_split_brain(self, clock, runners):
        """Two runners that both believe they lead still run each job once per tick (per-job claims)."""
        claims = {}
        count = {"a": 0, "b": 0}

        def bump(name):
            count[name] += 1

        for i in range(2):
            r = runners(leader=SplitBrainLock(claims), name="r%d" % i)
            r.set_jobs([job("a", lambda: bump("a")), job("b", lambda: bump("b"), Every(minutes=2))])
        clock.advance(60 * 4)
        assert count == {"a": 4, "b": 2}
        assert "a@2026-01-01T00:01:00+00:00" in claims

    def test_lock_errors_mean_not_leader(self, clock, runners, caplog):
        """[issue 14 item 6] A lock that raises means 'not leader this tick'; after 3 such ticks one ERROR
        and snapshot()["leader_error"]; the runner survives and leads again later."""
        lock = FlakyLock()
        r = runners(leader=lock)
        rec = Recorder("a", clock)
        r.set_jobs([rec])
        r.push([Recorder("pushed", clock)])
        lock.broken = True
        with caplog.at_level(logging.DEBUG, logger="greenworks.jobs"):
            clock.advance(120)
            assert r.snapshot()["leader_error"] is None
            assert not [m for m in caplog.records if m.levelno >= logging.WARNING]
            clock.advance(180)
        assert rec.runs == [] and r.stats()["not_leader_ticks_total"] == 5
        assert r.stats()["batch_queue_depth"] == 1  # a follower leaves pushed batches queued
        errors = [m.getMessage() for m in caplog.records if m.levelno == logging.ERROR]
        assert len(errors) == 1 and "failed on 3 ticks in a row" in errors[0]
        assert r.snapshot()["leader_error"] == "ConnectionError: backend down"
        lock.broken = False
        with caplog.at_level(logging.WARNING, logger="greenworks.jobs"):
            clock.advance(60)
        assert any("reachable again" in m.getMessage() for m in caplog.records)
        assert rec.runs == [minute(6)] and r.is_leader and r.snapshot()["leader_error"] is None
        r.stop(wait=False)
        assert lock.released == 1 and not lock.is_held


class TestSnapshot:
    def test_snapshot_is_json(self, clock, runners):
        """snapshot() is JSON-serialisable and names the component, ticks, stats and standing job ids."""
        r = runners(name="cron")
        r.set_jobs([job("a", lambda: 1), job("b", lambda: 2)])
        snap = json.loads(json.dumps(r.snapshot()))
        assert snap["component"] == "jobs" and snap["name"] == "cron" and snap["tick"] == 60.0
        assert snap["last_tick"] is None and snap["next_tick"] == minute(1).isoformat()
        assert snap["is_leader"] is True and [j["id"] for j in snap["jobs"]] == ["a", "b"]
        assert snap["state"] == "running" and snap["leader_error"] is None
        assert snap["stats"]["batch_queue_capacity"] == 64
        clock.advance(60)
        assert r.snapshot()["last_tick"] == minute(1).isoformat()


class TestSchedules:
    def test_every(self):
        """Every(minutes=5) is due on multiples of 5 minutes since the epoch, shifted by offset."""
        five = Every(minutes=5)
        assert [five(minute(n)) for n in range(6)] == [True, False, False, False, False, True]
        shifted = Every(hours=1, offset=datetime.timedelta(minutes=30))
        assert shifted.is_run(minute(30)) and not shifted.is_run(minute(0))
        assert five.period == 300.0

    @pytest.mark.parametrize(
        "kwargs", [{"minutes": 0}, {"seconds": 0.0001}, {"minutes": "5"}, {"seconds": -1}]
    )
    def test_every_rejects_bad_period(self, kwargs):
        """A bad Every period raises InvalidScheduleError naming the value."""
        with pytest.raises(InvalidScheduleError, match=repr(next(iter(kwargs.values())))):
            Every(**kwargs)

    def test_cron_matches_in_now_zone(self):
        """Cron('0 9 * * *') is due at 09:00 of the zone of now, or of its own timezone."""
        seoul = ZoneInfo("Asia/Seoul")
        cron = Cron("0 9 * * *")
        assert cron(minute(0).astimezone(seoul))  # 00:00 UTC is 09:00 KST
        assert not cron(minute(0))
        assert Cron("0 9 * * *", timezone=seoul)(minute(0))

    def test_cron_sequence_and_going_back(self):
        """Cron('*/5 * * * *') matches every 5th minute, also when asked about an earlier time again."""
        cron = Cron("*/5 * * * *")
        assert [n for n in range(16) if cron(minute(n))] == [0, 5, 10, 15]
        assert cron(minute(5)) and not cron(minute(3)) and cron(minute(60 * 24 * 3))

    def test_cron_bad_expression(self):
        """A bad cron expression raises InvalidScheduleError (a ValueError) naming the expression."""
        with pytest.raises(InvalidScheduleError, match="'61 \\* \\* \\* \\*'") as info:
            Cron("61 * * * *")
        assert isinstance(info.value, ValueError)
        with pytest.raises(InvalidScheduleError):
            Cron(5)

    def test_cron_without_croniter(self, monkeypatch):
        """Cron needs no croniter at run time: it works with the module hidden."""
        monkeypatch.setitem(sys.modules, "croniter", None)
        assert Cron("*/5 * * * *")(minute(5))

    def test_job_helper_schedules(self):
        """job() accepts no schedule (always due), a callable, or an object with is_run."""
        assert job("a", lambda: 1).is_run(minute(3))
        assert not job("a", lambda: 1, lambda now: now.minute == 2).is_run(minute(3))
        assert job("a", lambda: 1, Every(minutes=3)).is_run(minute(3))
        assert job("a", lambda: 7).run() == 7 and job("a", lambda: 7).get_id() == "a"

    @pytest.mark.parametrize(
        "args, name", [(("", len), "id"), ((3, len), "id"), (("a", 3), "fn"), (("a", len, 3), "schedule")]
    )
    def test_job_helper_rejects_bad_input(self, args, name):
        """Job names the bad argument."""
        with pytest.raises(InvalidArgument, match="^%s must be" % name):
            Job(*args)


class TestScale:
    @pytest.mark.timeout(120)
    def test_thousand_minutes_two_hundred_jobs(self, clock, runners):
        """Over 1,000 FakeClock minutes, each of 200 standing jobs runs exactly once per due minute."""
        crons = {
            "*/5 * * * *": lambda t: t.minute % 5 == 0,
            "7 * * * *": lambda t: t.minute == 7,
            "15,45 * * * *": lambda t: t.minute in (15, 45),
            "0 */2 * * *": lambda t: t.minute == 0 and t.hour % 2 == 0,
            "*/3 3-5 * * *": lambda t: 3 <= t.hour <= 5 and t.minute % 3 == 0,
        }
        runs = {}
        expected_due = {}
        jobs = []
        cron_items = list(crons.items())
        for i in range(200):
            jid = "job%03d" % i
            if i % 2:
                expr, check = cron_items[i % len(cron_items)]
                schedule = Cron(expr)
            else:
                every = 1 + i % 13

                def check(t, every=every):
                    return (int(t.timestamp()) // 60) % every == 0

                schedule = Every(minutes=every)
            expected_due[jid] = check
            runs[jid] = []
            jobs.append(job(jid, lambda jid=jid: runs[jid].append(clock.time()), schedule))
        r = runners(limit=50, dedupe=True, results_buffer=2)
        r.set_jobs(jobs)
        clock.advance(60 * 1000)
        total = 0
        for jid, check in expected_due.items():
            want = [m for m in range(1, 1001) if check(minute(m))]
            assert [int(t - T0.timestamp()) // 60 for t in runs[jid]] == want, jid
            total += len(want)
        assert total > 20000
        s = r.stats()
        assert (s["dedupe_skips_total"], s["missed_ticks_total"]) == (0, 0)


def worker_greenlets():
    return [g for g in _greenlets.alive() if g.name.startswith("greenworks.jobs[") and ":" not in g.name]


def parked_workers():
    """The runner's worker greenlets not running a job (they carry their idle name)."""
    return [g for g in _greenlets.alive() if g.name.startswith("greenworks.jobs[jobs:worker ")]


class TestWorkers:
    def test_trivial_jobs_share_workers_not_one_greenlet_each(self, clock, runners, monkeypatch):
        """1,000 jobs that never block run on at most 2 worker greenlets, not one greenlet per job."""
        spawned = []
        real_spawn = _greenlets.spawn

        def spying_spawn(name, func, *args, **kwargs):
            spawned.append(name)
            return real_spawn(name, func, *args, **kwargs)

        monkeypatch.setattr(_greenlets, "spawn", spying_spawn)
        r = runners()
        res = r.push_and_await([Recorder("j%d" % i, clock) for i in range(1000)]).get()
        assert len(res.items) == 1000 and all(i.error is None for i in res.items)
        workers = [n for n in spawned if ":worker " in n]
        assert 1 <= len(workers) <= 2
        others = sorted(set(spawned) - set(workers))
        assert others == ["greenworks.jobs[jobs:batch 1]", "greenworks.jobs[jobs:tick]"]

    def test_workers_never_exceed_limit_across_batches(self, clock, runners):
        """With limit 4 and two batches of blocking jobs, exactly 4 job greenlets exist, all named by job."""
        r = runners(None, 4)
        gate = runners.gate()
        a = r.push_and_await([Gated("a%d" % i, gate) for i in range(6)])
        b = r.push_and_await([Gated("b%d" % i, gate) for i in range(6)])
        settle()
        names = sorted(g.name for g in worker_greenlets())
        assert len(names) == 4 and names == sorted(set(names))
        assert all(n in ["greenworks.jobs[%s]" % j for j in ("a0", "a1", "a2", "a3", "b0")] for n in names)
        gate.set()
        assert len(a.get().items) == len(b.get().items) == 6

    def test_blocking_job_does_not_hold_up_jobs_queued_behind_it(self, clock, runners):
        """A job that blocks leaves the jobs queued behind it in the same batch free to run at once."""
        r = runners(None, 3)
        gate = runners.gate()
        slow = Gated("slow", gate)
        quick = [Recorder("q%d" % i, clock) for i in range(5)]
        handle = r.push_and_await([slow, *quick])
        settle()
        assert slow.started.is_set() and all(len(q.runs) == 1 for q in quick)
        assert not handle.ready() and r.stats()["in_flight_jobs"] == 1
        gate.set()
        assert sorted(i.id for i in handle.get().items) == ["q0", "q1", "q2", "q3", "q4", "slow"]

    def test_one_worker_stays_warm_between_batches(self, clock, runners):
        """After a batch, the workers retire but one, which runs the next tick; stop retires it too."""
        r = runners()
        gate = runners.gate()
        gated = [Gated("g%d" % i, gate) for i in range(3)]
        handle = r.push_and_await(gated)
        settle()
        assert all(g.started.is_set() for g in gated)
        assert len(worker_greenlets()) == 3  # each blocking job got its own worker
        gate.set()
        handle.get()
        settle()
        (warm,) = parked_workers()
        assert runner_greenlets() == ["greenworks.jobs[jobs:tick]", warm.name]
        recs = [Recorder("j%d" % i, clock) for i in range(20)]
        r.set_jobs(recs)
        clock.advance(60)
        settle()
        assert parked_workers() == [warm]  # the same greenlet ran the tick: no spawn per tick
        clock.advance(60)
        settle()
        assert parked_workers() == [warm]
        assert all(rec.runs == [minute(1), minute(2)] for rec in recs)
        assert r.stop(timeout=5) is True
        assert warm.dead and runner_greenlets() == []

    def test_stop_between_batches_retires_the_warm_worker(self, clock, runners):
        """stop(wait=False) then wait(): the parked worker leaves and wait() sees nothing left."""
        r = runners()
        r.push_and_await([Recorder("once", clock)]).get()
        settle()
        (warm,) = parked_workers()
        r.stop(wait=False)
        assert r.wait(timeout=5) is True
        assert warm.dead and runner_greenlets() == []

    def test_worker_killed_mid_job_frees_its_slot_and_the_batch(self, clock, runners):
        """A worker killed while running a job frees its slot and in-flight id; the batch still ends."""
        r = runners(None, 1, dedupe=True)
        gate = runners.gate()
        stuck, after = Gated("stuck", gate), Recorder("after", clock)
        handle = r.push_and_await([stuck, after])
        settle()
        (worker,) = worker_greenlets()
        assert worker.name == "greenworks.jobs[stuck]"
        worker.kill()
        res = handle.get()
        assert [i.id for i in res.items] == ["after"] and after.runs
        assert r.in_flight_ids() == [] and r.stats()["in_flight_jobs"] == 0

    def test_job_timestamps_are_aware_datetimes_in_the_runner_zone(self, clock, runners):
        """started_at/ended_at of run, skipped and shut-down jobs are datetimes in timezone, on the clock."""
        seoul = ZoneInfo("Asia/Seoul")
        r = runners(None, 1, dedupe=True, timezone=seoul)
        gate = runners.gate()
        clock.advance(5)
        handle = r.push_and_await([Sleeper("s", clock, 2.0, {"active": 0, "peak": 0}), Gated("s", gate)])
        settle()
        clock.advance(2)
        res = handle.get()
        ran, skipped = res.by_id()["s"], res.items[0]
        assert isinstance(skipped.error, SkippedDuplicateError) and ran.error is None
        start = T0 + datetime.timedelta(seconds=5)
        assert (skipped.started_at, skipped.ended_at) == (start, start)
        assert (ran.started_at, ran.ended_at) == (start, start + datetime.timedelta(seconds=2))
        assert all(t.tzinfo is seoul for i in res.items for t in (i.started_at, i.ended_at))
        assert res.started_at.tzinfo is seoul and res.ended_at == start + datetime.timedelta(seconds=2)
