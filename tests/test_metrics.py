"""Tests for greenworks.metrics: each event kind moves the right series; gauges read stats()."""

import datetime
import os
import subprocess
import sys

import pytest
import zope.event
from zope.interface.verify import verifyClass, verifyObject

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from greenworks import events, metrics, status  # noqa: E402
from greenworks.dispatcher import Dispatcher  # noqa: E402
from greenworks.exceptions import DeadlineExceeded, InvalidArgument  # noqa: E402
from greenworks.interfaces import IMetrics  # noqa: E402

AT = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
TICK = AT


@pytest.fixture
def registry():
    """A fresh registry with the metrics installed in it; uninstalled afterwards."""
    registry = CollectorRegistry()
    exported = metrics.install(registry)
    try:
        yield registry
    finally:
        exported.uninstall()


def value(registry, metric, **labels):
    """The sample *metric* with exactly *labels* (0.0 when absent)."""
    got = registry.get_sample_value(metric, labels)
    return 0.0 if got is None else got


def emit(kind, name, *fields):
    events.notify(kind(object(), name, AT, *fields))


class TestInterfaces:
    def test_metrics_provides_imetrics(self, registry):
        """The handle install() returns provides IMetrics, attributes included."""
        assert verifyClass(IMetrics, metrics.Metrics)
        assert verifyObject(IMetrics, metrics.current())


class TestInstall:
    def test_install_is_idempotent_and_uninstall_unsubscribes(self):
        """install() twice gives one handle; uninstall() unsubscribes and frees the names for a reinstall."""
        registry = CollectorRegistry()
        exported = metrics.install(registry)
        try:
            assert metrics.install(registry) is exported and exported.installed
            with pytest.raises(InvalidArgument, match="registry"):
                metrics.install(CollectorRegistry())
        finally:
            exported.uninstall()
        assert not exported.installed and metrics.current() is None
        assert exported._on_event not in zope.event.subscribers
        emit(events.TaskFailed, "io", "t", ValueError())
        again = metrics.install(registry)
        try:
            assert value(registry, "greenworks_tasks_total", name="io", outcome="failed") == 0
        finally:
            again.uninstall()
        exported.uninstall()  # idempotent

    def test_multiprocess_without_its_directory_is_refused(self):
        """multiprocess=True without PROMETHEUS_MULTIPROC_DIR is refused, naming the argument."""
        with pytest.raises(InvalidArgument, match="multiprocess"):
            metrics.install(CollectorRegistry(), multiprocess=True)
        with pytest.raises(InvalidArgument, match="refresh"):
            metrics.install(CollectorRegistry(), refresh=0)

    def test_missing_prometheus_client_says_how_to_install_it(self):
        """Without prometheus_client, install() raises ImportError naming the extra."""
        code = (
            "import sys; sys.modules['prometheus_client'] = None\n"
            "from greenworks import metrics\n"
            "try:\n    metrics.install()\nexcept ImportError as e:\n    print(e)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert "pip install 'greenworks[prometheus]'" in out.stdout, out.stderr


class TestEvents:
    def test_dispatcher_task_outcomes_are_counted(self, registry):
        """TaskFailed, TaskTimedOut and TaskRejected count under their outcome and component name."""
        emit(events.TaskFailed, "io", "t", ValueError("x"))
        emit(events.TaskFailed, "io", "t", ValueError("x"))
        emit(events.TaskTimedOut, "io", "t", 1.5)
        emit(events.TaskRejected, "cpu", "t")
        assert value(registry, "greenworks_tasks_total", name="io", outcome="failed") == 2
        assert value(registry, "greenworks_tasks_total", name="io", outcome="timed_out") == 1
        assert value(registry, "greenworks_tasks_total", name="cpu", outcome="rejected") == 1

    def test_pool_scaled_counts_by_reason_and_sets_workers(self, registry):
        """PoolScaled counts by reason and sets the workers gauge to its ``after``."""
        emit(events.PoolScaled, "io", 2, 4, "backlog")
        emit(events.PoolScaled, "io", 4, 1, "idle")
        assert value(registry, "greenworks_pool_scaled_total", name="io", reason="backlog") == 1
        assert value(registry, "greenworks_pool_scaled_total", name="io", reason="idle") == 1
        assert value(registry, "greenworks_workers", name="io") == 1

    def test_worker_exits_count_ok_and_error(self, registry):
        """WorkerExited counts ok (no error) and error apart."""
        emit(events.WorkerExited, "checks", "a", None)
        emit(events.WorkerExited, "checks", "a", RuntimeError())
        assert value(registry, "greenworks_worker_exits_total", name="checks", outcome="ok") == 1
        assert value(registry, "greenworks_worker_exits_total", name="checks", outcome="error") == 1

    def test_job_finished_counts_outcome_and_observes_duration_and_lateness(self, registry):
        """JobFinished counts ok/error/timed_out per job and feeds both histograms."""
        emit(events.JobFinished, "jobs", "report", TICK, "done", None, 0.2, 0.01)
        emit(events.JobFinished, "jobs", "report", TICK, None, ValueError("x"), 2.0, 0.5)
        emit(events.JobFinished, "jobs", "report", TICK, None, DeadlineExceeded("late"), 20.0, 0.0)
        labels = {"name": "jobs", "job": "report"}
        for outcome in ("ok", "error", "timed_out"):
            assert value(registry, "greenworks_job_runs_total", outcome=outcome, **labels) == 1
        assert value(registry, "greenworks_job_duration_seconds_count", **labels) == 3
        assert value(registry, "greenworks_job_duration_seconds_sum", **labels) == pytest.approx(22.2)
        assert value(registry, "greenworks_job_duration_seconds_bucket", le="0.5", **labels) == 1
        assert value(registry, "greenworks_job_lateness_seconds_sum", **labels) == pytest.approx(0.51)

    def test_job_skips_and_missed_ticks_are_counted(self, registry):
        """JobSkipped counts per job and reason; TicksMissed adds its count."""
        emit(events.JobSkipped, "jobs", "report", TICK, "dedupe")
        emit(events.TicksMissed, "jobs", 3)
        assert value(registry, "greenworks_job_skips_total", name="jobs", job="report", reason="dedupe") == 1
        assert value(registry, "greenworks_ticks_missed_total", name="jobs") == 3

    def test_restarts_and_give_ups_are_counted_per_task(self, registry):
        """TaskRestarted and TaskGaveUp count per TaskManager and task name."""
        emit(events.TaskRestarted, "tm", "copy", 1, ValueError())
        emit(events.TaskRestarted, "tm", "copy", 2, ValueError())
        emit(events.TaskGaveUp, "tm", "copy", 2, ValueError())
        assert value(registry, "greenworks_task_restarts_total", name="tm", task="copy") == 2
        assert value(registry, "greenworks_task_give_ups_total", name="tm", task="copy") == 1

    def test_leader_gauge_follows_leadership_and_stop(self, registry):
        """greenworks_leader is 1 after LeadershipAcquired, 0 after LeadershipLost or the runner's stop."""
        emit(events.LeadershipAcquired, "jobs")
        assert value(registry, "greenworks_leader", name="jobs") == 1
        emit(events.LeadershipLost, "jobs", "lost")
        assert value(registry, "greenworks_leader", name="jobs") == 0
        emit(events.LeadershipAcquired, "jobs")
        emit(events.ComponentStopped, "jobs", True)
        assert value(registry, "greenworks_leader", name="jobs") == 0
        emit(events.ComponentStopped, "other", True)
        assert registry.get_sample_value("greenworks_leader", {"name": "other"}) is None

    def test_hub_blocks_count_per_component_foreign_apart(self, registry):
        """HubBlocked adds its seconds per culprit component; a foreign greenlet is '(foreign)'."""
        emit(events.HubBlocked, "jobs", 0.3, "greenworks.jobs[report]", "jobs", "report", "")
        emit(events.HubBlocked, None, 0.2, "Greenlet-1", None, None, "")
        assert value(registry, "greenworks_hub_blocked_seconds_total", component="jobs") == pytest.approx(0.3)
        assert value(registry, "greenworks_hub_blocks_total", component="(foreign)") == 1


class TestRegisteredComponents:
    def test_gauges_and_ok_tasks_come_from_stats_at_scrape_time(self, registry, clock):
        """A registered Dispatcher's workers/busy/buffered are read at scrape; ok = executed - failed."""
        exported = metrics.current()
        d = Dispatcher(10, 2, 4, name="pool", clock=clock)
        d.run()
        try:
            exported.register(d)
            assert d.submit(lambda: 1).get(timeout=5) == 1
            failing = d.submit(lambda: 1 / 0)
            with pytest.raises(ZeroDivisionError):
                failing.get(timeout=5)
            text = prometheus_client.generate_latest(registry).decode()
            stats = d.stats()
        finally:
            d.quit()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert samples[("greenworks_workers", (("name", "pool"),))] == stats["workers"] == 2
        assert samples[("greenworks_busy_workers", (("name", "pool"),))] == 0
        assert samples[("greenworks_buffered_tasks", (("name", "pool"),))] == 0
        assert samples[("greenworks_tasks_total", (("name", "pool"), ("outcome", "ok")))] == 1
        # A second scrape does not count the same successes again.
        exported.refresh()
        assert value(registry, "greenworks_tasks_total", name="pool", outcome="ok") == 1

    def test_register_refuses_what_has_no_stats(self, registry):
        """register() of an object without stats() or snapshot() is refused, naming its position."""
        with pytest.raises(InvalidArgument, match=r"components\[0\]"):
            metrics.current().register(object())


class TestWsgi:
    def test_status_app_serves_metrics_that_parse(self, registry):
        """status.wsgi_app() answers /metrics in the text format prometheus_client's parser reads."""
        emit(events.TaskFailed, "io", "t", ValueError())
        app = status.wsgi_app()
        seen = {}

        def start_response(code, headers):
            seen["code"], seen["headers"] = code, dict(headers)

        body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics"}, start_response))
        assert seen["code"] == "200 OK" and seen["headers"]["Content-Type"].startswith("text/plain")
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert {"greenworks_tasks", "greenworks_job_runs", "greenworks_hub_blocked_seconds"} <= names

    def test_mark_process_dead_without_multiprocess_is_a_no_op(self):
        """mark_process_dead() outside multiprocess mode does nothing and does not raise."""
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        assert metrics.mark_process_dead(12345) is None
