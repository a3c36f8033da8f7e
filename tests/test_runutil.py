"""Tests for greenworks.runutil: the seed 004 checklist, on a FakeClock."""

import logging
import re
import sys

import gevent
import pytest
from gevent.event import Event
from zope.interface import implementer
from zope.interface.registry import Components
from zope.interface.verify import verifyClass, verifyObject

from greenworks import _greenlets
from greenworks.backoff import ExponentialBackoff, StaticBackoff
from greenworks.context import with_cancel, with_timeout
from greenworks.exceptions import Canceled, DeadlineExceeded, InvalidArgument, WorkerExitedPrematurely
from greenworks.interfaces import IRunOnce, IWorker, IWorkerConfigurer
from greenworks.runutil import (
    DeclarativeWorker,
    JobFunc,
    NamedWorker,
    Repeat,
    Retry,
    RetryJob,
    SubsystemFilter,
    WorkerFunc,
    current_subsystem,
    current_trace,
    job_func,
    named_worker,
    named_worker_from_type,
    provide_worker,
    provided_workers,
    repeat,
    retry,
    retry_job,
    run_all_jobs,
    run_all_workers,
    run_provided_workers,
    type_name,
    wait,
    worker_func,
)
from greenworks.testing import settle

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup


def block(ctx):
    """A worker that runs until cancelled and then returns None."""
    ctx.wait()


class Boom(Exception):
    """A test failure."""


class RecordingBackoff:
    """An IBackoff waiting `attempt` seconds, remembering every attempt asked for."""

    def __init__(self):
        self.attempts = []

    def duration(self, attempt):
        self.attempts.append(attempt)
        return float(attempt)


@pytest.fixture
def ctx(clock):
    context = with_cancel(None, clock=clock)
    yield context
    context.cancel()


def spawn(fn, *args):
    """Start a test greenlet (not a library one)."""
    return gevent.spawn(fn, *args)


class TestInterfaces:
    @pytest.mark.parametrize(
        ("cls", "obj"),
        [
            (WorkerFunc, WorkerFunc(block)),
            (Repeat, Repeat(1.0, block)),
            (Retry, Retry(block, StaticBackoff(1))),
            (NamedWorker, NamedWorker("n", block)),
            (DeclarativeWorker, DeclarativeWorker("n", block)),
        ],
    )
    def test_workers_provide_iworker(self, cls, obj):
        """Every worker class implements and provides IWorker."""
        assert verifyClass(IWorker, cls)
        assert verifyObject(IWorker, obj)

    @pytest.mark.parametrize(
        ("cls", "obj"),
        [(JobFunc, JobFunc(block)), (RetryJob, RetryJob(block, StaticBackoff(1)))],
    )
    def test_jobs_provide_irunonce(self, cls, obj):
        """Every job class implements and provides IRunOnce."""
        assert verifyClass(IRunOnce, cls)
        assert verifyObject(IRunOnce, obj)

    def test_func_adapters_call_through(self, ctx):
        """worker_func/job_func adapt fn(ctx) and pass the ctx and return value through."""
        assert worker_func(lambda c: ("w", c)).run(ctx) == ("w", ctx)
        assert job_func(lambda c: ("j", c)).run_once(ctx) == ("j", ctx)
        with pytest.raises(InvalidArgument, match="fn"):
            worker_func(42)


class TestWait:
    def test_sleeps_the_whole_duration_on_the_ctx_clock(self, clock, ctx):
        """[MATCH] wait(ctx, d) blocks for d seconds of the context's clock."""
        g = spawn(wait, ctx, 10.0)
        assert clock.wait_for_sleepers(1)
        clock.advance(9.5)
        assert not g.dead
        clock.advance(0.5)
        assert g.dead and g.successful() and g.value is None

    def test_returns_early_on_cancel(self, clock, ctx):
        """[MATCH] wait returns at once when ctx is cancelled, without time passing."""
        g = spawn(wait, ctx, 10.0)
        assert clock.wait_for_sleepers(1)
        ctx.cancel()
        g.join(timeout=1)
        assert g.dead and g.value is None
        assert clock.monotonic() == 1000.0

    @pytest.mark.parametrize("seconds", [0, -5.0])
    def test_non_positive_returns_at_once(self, clock, ctx, seconds):
        """[MATCH] wait with d <= 0 returns at once and registers no sleeper."""
        assert wait(ctx, seconds) is None
        assert clock.sleepers == 0

    def test_nan_is_rejected(self, ctx):
        """wait with NaN raises InvalidArgument naming `seconds`."""
        with pytest.raises(InvalidArgument, match="seconds"):
            wait(ctx, float("nan"))


class TestRepeat:
    @pytest.mark.parametrize("interval", [0, -1.0, float("nan"), float("inf"), "1"])
    def test_bad_interval_raises_at_construction(self, interval):
        """[FIX/EXT] repeat(wait <= 0) raises ValueError naming `interval` when constructed, not at run."""
        with pytest.raises(ValueError, match="interval"):
            repeat(interval, block)

    def test_bad_job_raises_at_construction(self):
        """A job that is neither IRunOnce nor callable raises InvalidArgument naming `job`."""
        with pytest.raises(InvalidArgument, match="job"):
            repeat(1.0, 42)

    def test_runs_on_the_grid_until_cancelled(self, clock, ctx):
        """[MATCH] repeat runs the job every interval (first after one interval) and returns None when
        cancelled."""
        starts = []
        g = spawn(repeat(1.0, lambda c: starts.append(clock.monotonic())).run, ctx)
        assert clock.wait_for_sleepers(1)
        assert starts == []
        clock.advance(3.0)
        assert starts == [1001.0, 1002.0, 1003.0]
        ctx.cancel()
        g.join(timeout=1)
        assert g.dead and g.successful() and g.value is None
        assert len(starts) == 3

    def test_slow_job_runs_again_at_once_and_drops_missed_ticks(self, clock, ctx):
        """[MATCH] A job overrunning its slot runs again straight after, missed ticks are dropped (Go:
        0,350,600,850)."""
        starts = []

        def slow(c):
            starts.append(clock.monotonic() - 1000.0)
            clock.sleep(2.5)

        g = spawn(repeat(1.0, slow, start_immediately=True).run, ctx)
        clock.advance(9.0)
        assert starts == [0.0, 3.5, 6.0, 8.5]
        ctx.cancel()
        clock.advance(3.0)
        g.join(timeout=1)
        assert g.dead and g.value is None
        assert len(starts) == 4

    def test_missed_ticks_are_not_caught_up_in_a_burst(self, clock, ctx):
        """[MATCH] After one overrun of 2.5 intervals it runs once at once, then on the grid (no burst)."""
        starts = []

        def job(c):
            starts.append(clock.monotonic() - 1000.0)
            if len(starts) == 1:
                clock.sleep(2.5)

        g = spawn(repeat(1.0, job).run, ctx)
        clock.advance(5.0)
        assert starts == [1.0, 3.5, 4.0, 5.0]
        ctx.cancel()
        g.join(timeout=1)
        assert g.dead

    def test_start_immediately_runs_first_then_ticks_after_it(self, clock, ctx):
        """[MATCH] with start_immediately the job runs at once; the ticker starts after that run finishes."""
        starts = []

        def job(c):
            starts.append(clock.monotonic() - 1000.0)
            if len(starts) == 1:
                clock.sleep(0.5)

        g = spawn(repeat(1.0, job, start_immediately=True).run, ctx)
        settle()
        assert starts == [0.0]
        clock.advance(2.5)
        assert starts == [0.0, 1.5, 2.5]
        ctx.cancel()
        g.join(timeout=1)
        assert g.dead

    def test_first_error_ends_the_worker(self, clock, ctx):
        """[MATCH] repeat raises the job's first error and does not run the job again."""
        runs = []

        def job(c):
            runs.append(1)
            if len(runs) == 2:
                raise Boom("second run")

        g = spawn(repeat(1.0, job).run, ctx)
        clock.advance(5.0)
        g.join(timeout=1)
        assert isinstance(g.exception, Boom)
        assert len(runs) == 2

    def test_never_runs_with_a_done_context(self, ctx):
        """A context done before run() starts no run at all, not even the immediate one."""
        runs = []
        ctx.cancel()
        assert repeat(1.0, lambda c: runs.append(1), start_immediately=True).run(ctx) is None
        assert runs == []

    def test_job_raising_its_own_cancellation_stops_gracefully(self, clock, ctx):
        """A job that raises Canceled after its context was cancelled ends repeat with None, not an error."""

        def job(c):
            c.wait()
            c.raise_if_done()

        g = spawn(repeat(1.0, job, start_immediately=True).run, ctx)
        settle()
        ctx.cancel()
        g.join(timeout=1)
        assert g.successful() and g.value is None

    def test_accepts_irunonce_objects(self, clock, ctx):
        """An IRunOnce job is run through its run_once method."""

        @implementer(IRunOnce)
        class Job:
            count = 0

            def run_once(self, c):
                self.count += 1

        job = Job()
        g = spawn(repeat(2.0, job).run, ctx)
        clock.advance(4.0)
        ctx.cancel()
        g.join(timeout=1)
        assert job.count == 2

    def test_on_run_hook_sees_every_run_with_error_and_duration(self, clock, ctx):
        """[EXT] on_run(error, seconds) is called after each run, the failing one too."""
        reports = []
        runs = []

        def job(c):
            runs.append(1)
            clock.sleep(0.5)
            if len(runs) == 2:
                raise Boom("second")

        worker = repeat(1.0, job, on_run=lambda error, seconds: reports.append((error, seconds)))
        g = spawn(worker.run, ctx)
        clock.advance(3.0)
        g.join(timeout=1)
        assert isinstance(g.exception, Boom)
        assert [(type(e).__name__, s) for e, s in reports] == [("NoneType", 0.5), ("Boom", 0.5)]

    def test_a_failing_on_run_hook_is_logged_and_ignored(self, clock, ctx, caplog):
        """An on_run hook that raises is logged once per call and the job keeps running on schedule."""
        runs = []

        def hook(error, seconds):
            raise RuntimeError("hook broke")

        g = spawn(repeat(1.0, lambda c: runs.append(1), on_run=hook).run, ctx)
        clock.advance(2.0)
        assert len(runs) == 2
        assert [r.levelno for r in caplog.records if "on_run hook" in r.getMessage()] == [logging.ERROR] * 2
        ctx.cancel()
        g.join(timeout=1)
        assert g.successful()
        with pytest.raises(InvalidArgument, match="on_run"):
            repeat(1.0, block, on_run=5)


class TestRetry:
    def test_restarts_after_errors_and_returns_with_backoff_per_consecutive_error(self, clock, ctx, caplog):
        """retry restarts after errors and normal returns, waiting duration(max(1, attempt)); a return
        resets attempt, and its restart still waits the first step."""
        outcomes = iter(["fail", "fail", "ok", "fail"])
        starts = []

        def worker(c):
            starts.append(clock.monotonic() - 1000.0)
            outcome = next(outcomes, "block")
            if outcome == "fail":
                raise Boom("attempt %d" % len(starts))
            if outcome == "block":
                c.wait()

        backoff = RecordingBackoff()
        caplog.set_level(logging.WARNING, logger="greenworks.runutil")
        g = spawn(retry(worker, backoff).run, ctx)
        clock.advance(10.0)
        assert starts == [0.0, 1.0, 3.0, 4.0, 5.0]
        assert backoff.attempts == [1, 2, 1, 1]
        assert not g.dead
        messages = [r.getMessage() for r in caplog.records if r.name == "greenworks.runutil"]
        assert [m.split(":")[0] for m in messages] == [
            "worker worker failed 1 times",
            "worker worker failed 2 times",
            "worker worker failed 1 times",
        ]
        assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "greenworks.runutil")
        ctx.cancel()
        g.join(timeout=1)
        assert g.successful() and g.value is None

    def test_cancel_during_backoff_never_runs_the_worker_again(self, clock, ctx):
        """[FIX] retry does not run the worker again once ctx was cancelled during the back-off wait."""
        calls = []

        def worker(c):
            calls.append(c.err)
            raise Boom

        g = spawn(retry(worker, StaticBackoff(10.0)).run, ctx)
        assert clock.wait_for_sleepers(1)
        ctx.cancel()
        g.join(timeout=1)
        assert g.successful() and g.value is None
        assert calls == [None]

    def test_go_probe_retry_of_failing_repeat(self, clock, ctx):
        """[MATCH] Retry(Repeat(start immediately)) with backoff 100 ms/400 ms, J 0 runs at
        0,100,300,700,1100,1500 ms."""
        starts = []

        def job(c):
            starts.append(round((clock.monotonic() - 1000.0) * 1000))
            raise Boom

        worker = retry(repeat(10.0, job, start_immediately=True), ExponentialBackoff(0.1, 0.4))
        g = spawn(worker.run, ctx)
        clock.advance(1.5)
        assert starts == [0, 100, 300, 700, 1100, 1500]
        ctx.cancel()
        g.join(timeout=1)

    def test_a_worker_returning_at_once_restarts_at_the_backoff_pace(self, clock, ctx):
        """[issue 14 item 7] retry(worker, StaticBackoff(0.1)) of a worker that returns at once restarts
        every 0.1 s, not in a busy loop."""
        starts = []
        g = spawn(retry(lambda c: starts.append(clock.monotonic() - 1000.0), StaticBackoff(0.1)).run, ctx)
        settle()
        clock.advance(0.35)
        assert starts == pytest.approx([0.0, 0.1, 0.2, 0.3])
        ctx.cancel()
        g.join(timeout=1)
        assert g.dead and g.value is None

    def test_a_zero_backoff_does_not_starve_the_hub(self, ctx):
        """With a 0 s backoff a worker that keeps returning at once is restarted, yet a cancel from
        another greenlet still lands."""
        calls = []
        g = spawn(retry(lambda c: calls.append(1), StaticBackoff(0.0)).run, ctx)
        while len(calls) < 50:
            gevent.sleep(0)
        ctx.cancel()
        g.join(timeout=1)
        assert g.dead and g.value is None

    def test_worker_raising_its_cancellation_ends_retry_quietly(self, clock, ctx, caplog):
        """A worker raising its own Canceled after cancellation ends retry with None, logging no failure."""

        def worker(c):
            c.wait()
            c.raise_if_done()

        g = spawn(retry(worker, StaticBackoff(1.0)).run, ctx)
        settle()
        ctx.cancel()
        g.join(timeout=1)
        assert g.successful() and g.value is None
        assert not [r for r in caplog.records if r.name == "greenworks.runutil"]

    @pytest.mark.parametrize("backoff", [None, 5, object()])
    def test_missing_backoff_raises(self, backoff):
        """retry without a usable backoff raises InvalidArgument naming `backoff` (Go: nil-pointer panic)."""
        with pytest.raises(InvalidArgument, match="backoff"):
            retry(block, backoff)


class TestRetryJob:
    def test_success_first_time_runs_once_and_returns_the_value(self, ctx):
        """[EXT] retry_job returns the job's value after a single successful run."""
        calls = []

        def job(c):
            calls.append(1)
            return "done"

        assert retry_job(job, StaticBackoff(1.0)).run_once(ctx) == "done"
        assert calls == [1]

    def test_success_after_three_failures_waits_between_attempts(self, clock, ctx):
        """[EXT] retry_job succeeding after 3 failures runs 4 times, waiting the backoff after each
        failure."""
        starts = []

        def job(c):
            starts.append(clock.monotonic() - 1000.0)
            if len(starts) <= 3:
                raise Boom
            return len(starts)

        g = spawn(retry_job(job, RecordingBackoff()).run_once, ctx)
        clock.advance(10.0)
        g.join(timeout=1)
        assert g.value == 4
        assert starts == [0.0, 1.0, 3.0, 6.0]

    def test_cancelled_during_wait_raises_canceled(self, clock, ctx):
        """[EXT] retry_job raises Canceled when its ctx is cancelled, and does not run the job again."""
        calls = []

        def job(c):
            calls.append(1)
            raise Boom

        g = spawn(retry_job(job, StaticBackoff(5.0)).run_once, ctx)
        assert clock.wait_for_sleepers(1)
        ctx.cancel()
        g.join(timeout=1)
        assert isinstance(g.exception, Canceled)
        assert calls == [1]

    def test_deadline_raises_deadline_exceeded(self, clock):
        """retry_job raises DeadlineExceeded when the deadline passes while it retries."""
        ctx = with_timeout(None, 3.0, clock=clock)

        def job(c):
            raise Boom

        g = spawn(retry_job(job, StaticBackoff(1.0)).run_once, ctx)
        clock.advance(5.0)
        g.join(timeout=1)
        assert isinstance(g.exception, DeadlineExceeded)


class CommitFetcher:
    """A configurer-like type for naming tests."""


class TestNaming:
    def test_named_worker_from_type_uses_module_and_class(self, ctx):
        """[MATCH] named_worker_from_type names the subsystem "<module>/<Class>" after the object's type."""
        seen = []
        worker = named_worker_from_type(CommitFetcher(), lambda c: seen.append(current_subsystem()))
        assert worker.name == "%s/CommitFetcher" % __name__
        assert type_name(CommitFetcher) == worker.name
        worker.run(ctx)
        assert seen == ["/%s/CommitFetcher" % __name__]

    def test_nested_names_form_a_path_and_trace_ids(self, ctx):
        """Nested named workers give the path "/outer/inner" and a trace id per level, joined by "-"."""
        seen = []
        worker = named_worker("outer", named_worker("inner", lambda c: seen.append(current_trace())))
        worker.run(ctx)
        (trace,) = seen
        assert trace.subsystem == "/outer/inner"
        assert trace.names == ("outer", "inner")
        assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]{12}", trace.trace_id)

    def test_name_is_taken_verbatim(self, ctx):
        """A "%" in a name is kept as is (seed v8.2-8.7 mangled it through Sprintf)."""
        seen = []
        named_worker("50%", lambda c: seen.append(current_subsystem())).run(ctx)
        assert seen == ["/50%"]

    def test_trace_is_left_when_the_worker_exits(self, ctx):
        """Outside any named worker there is no trace, also after one returned or raised."""
        assert current_trace() is None and current_subsystem() == ""

        def failing(c):
            raise Boom

        named_worker("a", lambda c: None).run(ctx)
        with pytest.raises(Boom):
            named_worker("a", failing).run(ctx)
        assert current_trace() is None and current_subsystem() == ""

    def test_each_run_gets_a_fresh_trace_id(self, ctx):
        """Every (re)start of a named worker gets a new trace id."""
        ids = []
        worker = named_worker("w", lambda c: ids.append(current_trace().trace_id))
        worker.run(ctx)
        worker.run(ctx)
        assert len(set(ids)) == 2

    def test_spawned_greenlets_inherit_the_path(self, ctx):
        """A greenlet spawned inside a named worker sees the worker's subsystem."""
        seen = []

        def worker(c):
            gevent.spawn(lambda: seen.append(current_subsystem())).join()

        named_worker("parent", worker).run(ctx)
        assert seen == ["/parent"]

    def test_subsystem_filter_annotates_records(self, ctx):
        """SubsystemFilter adds subsystem and trace_id to log records, "" outside named workers."""
        records = []

        class Collect(logging.Handler):
            def emit(self, record):
                records.append(record)

        handler = Collect()
        handler.addFilter(SubsystemFilter())
        log = logging.getLogger("test_runutil.subsystem")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        try:
            named_worker("svc", lambda c: log.info("inside")).run(ctx)
            log.info("outside")
        finally:
            log.removeHandler(handler)
        assert [(r.getMessage(), r.subsystem) for r in records] == [("inside", "/svc"), ("outside", "")]
        assert len(records[0].trace_id) == 12 and records[1].trace_id == ""

    def test_non_str_name_is_rejected(self):
        """named_worker with a non-str name raises InvalidArgument naming `name`."""
        with pytest.raises(InvalidArgument, match="name"):
            named_worker(None, block)


class TestDeclarativeWorker:
    def test_naming_is_inside_retry_with_fresh_trace_per_attempt(self, clock, ctx):
        """[MATCH] DeclarativeWorker runs Retry(Named(worker)): every attempt is named and gets a new trace
        id."""
        traces = []

        def worker(c):
            traces.append(current_trace())
            if len(traces) < 3:
                raise Boom
            c.wait()

        g = spawn(DeclarativeWorker("Commits", worker, retry=StaticBackoff(1.0)).run, ctx)
        clock.advance(2.0)
        assert [t.subsystem for t in traces] == ["/Commits"] * 3
        assert len({t.trace_id for t in traces}) == 3
        ctx.cancel()
        g.join(timeout=1)
        assert g.successful() and g.value is None

    def test_empty_name_leaves_the_worker_unnamed(self, ctx):
        """[MATCH] DeclarativeWorker with name "" does not name the worker."""
        seen = []
        DeclarativeWorker("", lambda c: seen.append(current_trace())).run(ctx)
        assert seen == [None]

    def test_no_retry_is_a_single_run(self, ctx):
        """[MATCH] DeclarativeWorker with retry None runs once: its error propagates, nothing restarts."""
        calls = []

        def worker(c):
            calls.append(1)
            raise Boom

        with pytest.raises(Boom):
            DeclarativeWorker("once", worker).run(ctx)
        assert calls == [1]

    def test_missing_worker_raises_at_construction(self):
        """DeclarativeWorker with worker None raises InvalidArgument naming `worker` (Go: panic at run)."""
        with pytest.raises(InvalidArgument, match="worker"):
            DeclarativeWorker("x", None)
        with pytest.raises(InvalidArgument, match="backoff"):
            DeclarativeWorker("x", block, retry=3)

    def test_seed_example_repeat_with_exponential_retry(self, clock, ctx):
        """The seed's example (Repeat 5 s of a job, retried with ExponentialBackoff 1 s/1 min/0.5) runs and
        recovers."""
        runs = []

        def fetch(c):
            runs.append(clock.monotonic() - 1000.0)
            if len(runs) == 2:
                raise Boom("flaky")

        worker = DeclarativeWorker(
            "Commits", repeat(5.0, job_func(fetch)), retry=ExponentialBackoff(1.0, 60.0, 0.5)
        )
        assert (worker.name, worker.retry) == ("Commits", ExponentialBackoff(1.0, 60.0, 0.5))
        g = spawn(worker.run, ctx)
        clock.advance(20.0)
        # Runs at 5 and 10 (fails); restarted after 0.5-1 s, the grid restarts from there.
        assert runs[:2] == [5.0, 10.0]
        assert len(runs) == 3 and 15.5 <= runs[2] <= 16.0
        ctx.cancel()
        g.join(timeout=1)
        assert g.successful()


class TestRunAllWorkers:
    def test_no_workers_returns_at_once(self, ctx):
        """[MATCH] run_all_workers(ctx) with no workers returns None at once."""
        assert run_all_workers(ctx) is None

    def test_first_return_cancels_every_other_worker(self, ctx):
        """[MATCH] When one worker returns, every other worker's ctx is cancelled (and it counts as
        premature)."""
        cancelled = []

        def waiter(c):
            c.wait()
            cancelled.append(c.err)

        with pytest.raises(ExceptionGroup) as info:
            run_all_workers(ctx, waiter, waiter, lambda c: None)
        assert len(cancelled) == 2 and all(isinstance(e, Canceled) for e in cancelled)
        assert [type(e) for e in info.value.exceptions] == [WorkerExitedPrematurely]
        assert ctx.err is None

    def test_parent_cancel_with_graceful_returns_is_none(self, ctx):
        """[MATCH] All workers returning None after the parent ctx is cancelled gives None."""
        g = spawn(run_all_workers, ctx, block, block, block)
        settle()
        ctx.cancel()
        g.join(timeout=1)
        assert g.successful() and g.value is None

    def test_workers_returning_before_cancel_are_premature(self, ctx):
        """[MATCH] Three workers returning None before any cancellation give WorkerExitedPrematurely."""
        with pytest.raises(ExceptionGroup) as info:
            run_all_workers(ctx, lambda c: None, lambda c: None, lambda c: None)
        (error,) = info.value.exceptions
        assert isinstance(error, WorkerExitedPrematurely)
        assert "worker exited prematurely" in str(error)
        # What ``except* WorkerExitedPrematurely`` matches (written this way to parse on Python 3.10).
        matched, rest = info.value.split(WorkerExitedPrematurely)
        assert matched is not None and rest is None

    def test_error_before_cancel_cancels_others_and_is_reported(self, ctx):
        """[MATCH] A worker raising at once cancels the others; the group holds its error (Go:
        PassthroughErrors)."""
        omg = Boom("omg")

        def failing(c):
            raise omg

        with pytest.raises(ExceptionGroup) as info:
            run_all_workers(ctx, block, failing, block)
        assert info.value.exceptions == (omg,)

    def test_errors_after_cancel_are_all_reported(self, ctx):
        """[MATCH] Errors raised after the parent was cancelled all end up in the group, in completion
        order."""

        def failing_on_cancel(message):
            def worker(c):
                c.wait()
                raise Boom(message)

            return worker

        g = spawn(run_all_workers, ctx, failing_on_cancel("a"), block, failing_on_cancel("b"))
        settle()
        ctx.cancel()
        g.join(timeout=1)
        assert isinstance(g.exception, ExceptionGroup)
        assert [str(e) for e in g.exception.exceptions] == ["a", "b"]
        matched = g.exception.split(Boom)[0]
        assert matched is not None and len(matched.exceptions) == 2

    def test_context_error_after_cancel_is_graceful(self, ctx):
        """A worker raising its context's Canceled after cancellation stops gracefully (Go reported it)."""

        def raising(c):
            c.wait()
            c.raise_if_done()

        g = spawn(run_all_workers, ctx, raising, block)
        settle()
        ctx.cancel()
        g.join(timeout=1)
        assert g.successful() and g.value is None

    def test_workers_run_in_named_tracked_greenlets_and_none_is_left(self, ctx):
        """Workers run in greenlets named greenworks.runutil[...] (renamed to the subsystem inside) and
        none is left."""
        names = []

        def worker(c):
            names.append(gevent.getcurrent().name)
            c.wait()

        g = spawn(run_all_workers, ctx, worker, named_worker("svc", worker))
        settle()
        assert sorted(names) == ["greenworks.runutil[/svc]", "greenworks.runutil[worker]"]
        assert len(_greenlets.alive()) == 2
        ctx.cancel()
        g.join(timeout=1)
        assert _greenlets.alive() == []

    def test_killing_the_caller_kills_the_workers(self, ctx):
        """Killing the greenlet blocked in run_all_workers kills every worker before the kill completes."""
        exits = []

        def stubborn(c):
            try:
                Event().wait()
            finally:
                exits.append(type(sys.exc_info()[1]).__name__)

        g = spawn(run_all_workers, ctx, stubborn, stubborn)
        settle()
        g.kill(timeout=1)
        assert g.dead
        assert exits == ["GreenletExit", "GreenletExit"]
        assert _greenlets.alive() == []

    def test_bad_worker_raises_before_anything_starts(self, ctx):
        """A worker that is neither IWorker nor callable raises InvalidArgument naming its position;
        nothing runs."""
        ran = []
        with pytest.raises(InvalidArgument, match=r"workers\[1\]"):
            run_all_workers(ctx, lambda c: ran.append(1), 42)
        assert ran == []
        with pytest.raises(InvalidArgument, match="ctx"):
            run_all_workers(None, block)


class TestRunAllJobs:
    def test_jobs_run_concurrently_and_none_on_success(self, ctx):
        """[MATCH] run_all_jobs runs jobs concurrently (each waits for the other) and returns None when all
        succeed."""
        a, b = Event(), Event()

        def job_a(c):
            a.set()
            b.wait()

        def job_b(c):
            b.set()
            a.wait()

        assert run_all_jobs(ctx, job_a, job_b) is None

    def test_first_error_cancels_nothing_and_every_error_is_joined(self, clock, ctx):
        """[MATCH] A failing job cancels nothing; the others finish and every error is in the group."""
        finished = []

        def slow(c):
            clock.sleep(5.0)
            finished.append(c.err)

        def failing(message):
            def job(c):
                raise Boom(message)

            return job

        g = spawn(run_all_jobs, ctx, failing("x"), slow, failing("y"))
        assert clock.wait_for_sleepers(1)
        clock.advance(5.0)
        g.join(timeout=1)
        assert finished == [None]
        assert sorted(str(e) for e in g.exception.exceptions) == ["x", "y"]
        assert _greenlets.alive() == []

    def test_no_jobs_returns_at_once(self, ctx):
        """run_all_jobs with no jobs returns None at once."""
        assert run_all_jobs(ctx) is None


@implementer(IWorkerConfigurer)
class Fetchers:
    def __init__(self, log):
        self.log = log

    def workers(self):
        return [
            DeclarativeWorker("commits", self.record),
            None,
            self.record,
        ]

    def record(self, ctx):
        self.log.append(current_subsystem())
        ctx.wait()


class TestProvidedWorkers:
    def test_every_worker_of_every_configurer_runs_named_by_type(self, ctx):
        """[MATCH] provide_worker + run_provided_workers run every worker, skip None, and name each by
        configurer type."""
        log = []
        factory_args = []
        registry = Components("test")
        provide_worker(registry, Fetchers(log))

        def factory(reg):
            factory_args.append(reg)
            return Fetchers(log)

        provide_worker(registry, factory)
        provide_worker(registry, lambda reg: None)
        g = spawn(run_provided_workers, ctx, registry)
        settle()
        base = "/%s/Fetchers" % __name__
        assert sorted(log) == sorted([base + "/commits", base] * 2)
        assert factory_args == [registry]
        ctx.cancel()
        g.join(timeout=1)
        assert g.successful() and g.value is None

    def test_provided_workers_lists_named_workers(self):
        """provided_workers returns one NamedWorker per non-None worker, named after the configurer type."""
        registry = Components("test")
        provide_worker(registry, Fetchers([]))
        workers = provided_workers(registry)
        assert [w.name for w in workers] == ["%s/Fetchers" % __name__] * 2

    def test_empty_registry_returns_at_once(self, ctx):
        """run_provided_workers on a registry without configurers returns None at once."""
        assert run_provided_workers(ctx, Components("empty")) is None

    def test_bad_arguments_are_rejected(self):
        """A non-registry or a non-configurer, non-callable value raises InvalidArgument naming it."""
        with pytest.raises(InvalidArgument, match="registry"):
            provide_worker(object(), Fetchers([]))
        with pytest.raises(InvalidArgument, match="configurer_or_factory"):
            provide_worker(Components("x"), 42)

    def test_factory_returning_a_non_configurer_is_reported(self):
        """A factory result without workers() raises InvalidArgument naming `configurer`."""
        registry = Components("x")
        provide_worker(registry, lambda reg: 42)
        with pytest.raises(InvalidArgument, match="configurer"):
            provided_workers(registry)
