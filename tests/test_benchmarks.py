"""
The benchmarks measure what they claim: each scenario runs at a tiny size and
the work its variants report (counted by the tasks and workers themselves) is
checked here against what the scenario's sizes ask for. No timing is asserted.
"""

import json
import os
import subprocess
import sys

import pytest
from zope.interface.verify import verifyClass, verifyObject

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import (  # noqa: E402
    _harness,
    bench_dispatcher,
    bench_events,  # noqa: F401  (registers its scenario)
    bench_executor,
    bench_jobs,
    bench_memory,  # noqa: F401  (registers its scenario)
    bench_runner,
    bench_scale,  # noqa: F401  (registers its scenario)
    bench_streams,
    bench_taskmanager,
    charts,
)
from benchmarks._harness import SCENARIOS, Measured, WorkNotDone, run_scenario  # noqa: E402
from greenworks.interfaces import IJob, IManagedTask, IWorker  # noqa: E402

RUN = os.path.join(ROOT, "benchmarks", "run.py")
ALL = [
    "trivial",
    "submit",
    "wakeup",
    "io",
    "reconcile",
    "reapply",
    "memory",
    "taskmanager",
    "jobs",
    "events",
    "executor",
    "streams",
    "scale",
]


def tiny(name):
    """Run scenario *name* at its tiny size, quietly, and return its result."""
    lines = []
    result = run_scenario(name, "tiny", out=lines.append)
    result["output"] = lines
    return result


def works(result, group=None):
    """Return ``{variant: [work dict per repetition]}`` of one measurement group."""
    measurements = result["measurements"]
    group = group or next(iter(measurements))
    return {name: entry["work"] for name, entry in measurements[group].items()}


def assert_all_greenworks_ran(result, optional_peer=None):
    """Every variant ran and every target was judged; *optional_peer* (a name in a target, e.g.
    "APScheduler") may be absent, and then its targets alone read SKIP and a note says why."""
    assert result["skipped"] == []
    roles = [entry["role"] for group in result["measurements"].values() for entry in group.values()]
    assert "greenworks" in roles and "baseline" in roles
    verdicts = [t["verdict"] for t in result["targets"]]
    peer_absent = optional_peer is not None and any(
        "%s variant skipped" % optional_peer in note for note in result["notes"]
    )
    assert verdicts and all(
        t["verdict"] in ("PASS", "MISS")
        or (peer_absent and t["verdict"] == "SKIP" and optional_peer in t["target"])
        for t in result["targets"]
    )


class TestInterfaces:
    def test_benchmark_worker_provides_iworker(self):
        """The Runner scenarios' worker is a real IWorker."""
        verifyClass(IWorker, bench_runner.ParkedWorker)
        verifyObject(IWorker, bench_runner.ParkedWorker(None, bench_runner.Tally()))

    def test_benchmark_task_provides_imanagedtask(self):
        """The TaskManager scenario's task is a real IManagedTask."""
        verifyClass(IManagedTask, bench_taskmanager.NamedTask)
        verifyObject(IManagedTask, bench_taskmanager.NamedTask("t", bench_taskmanager.Tally(1)))

    def test_benchmark_job_provides_ijob(self):
        """The JobRunner scenario's job is a real IJob."""
        verifyClass(IJob, bench_jobs.StandingJob)
        verifyObject(IJob, bench_jobs.StandingJob("j", 0.1))


class TestHarness:
    def test_every_scenario_of_the_issue_is_registered(self):
        """Each row of the issue's table has a scenario."""
        assert sorted(SCENARIOS) == sorted(ALL)

    def test_variants_run_interleaved_and_warmup_is_not_kept(self):
        """Variants run round-robin (g, b, g, b, ...) and the warm-up round is measured but dropped."""
        calls = []

        def variant(name, values):
            def run():
                calls.append(name)
                return Measured(values.pop(0), 1, 1)

            return run

        bench = _harness.Bench(SCENARIOS["trivial"], "tiny", repeat=3, warmup=True, out=lambda line: None)
        medians = bench.interleave(
            [
                ("g", "greenworks", variant("g", [100.0, 3.0, 1.0, 2.0])),
                ("b", "baseline", variant("b", [9.0, 5, 6, 7])),
            ],
            label="probe",
        )
        assert calls == ["g", "b"] * 4
        assert medians == {"g": 2.0, "b": 6}
        assert bench.result["measurements"]["probe"]["g"]["samples"] == [3.0, 1.0, 2.0]

    def test_a_variant_that_skips_work_fails_the_run(self):
        """A repetition reporting less work than asked raises WorkNotDone instead of producing a figure."""
        bench = _harness.Bench(SCENARIOS["trivial"], "tiny", repeat=1, warmup=False, out=lambda line: None)
        with pytest.raises(WorkNotDone, match="did 9 units of work, expected 10"):
            bench.interleave([("lazy", "greenworks", lambda: Measured(0.001, 9, 10))])

    def test_a_scenario_whose_waiting_is_skipped_fails(self, monkeypatch):
        """If the trivial scenario stopped waiting for its workers, the task counts catch it."""
        monkeypatch.setattr(bench_dispatcher, "_drain", lambda tally, goal: None)
        with pytest.raises(WorkNotDone):
            tiny("trivial")

    def test_targets_read_pass_miss_and_skip(self):
        """A target passes or misses on its threshold, and reads SKIP without a greenworks figure."""
        bench = _harness.Bench(SCENARIOS["trivial"], "tiny", out=lambda line: None)
        assert bench.target("a", 2.0, ">=", 1.5) == "PASS"
        assert bench.target("b", 1.0, ">=", 1.5) == "MISS"
        assert bench.target("c", 2.0, "<=", 1.5) == "MISS"
        assert bench.target("d", None, "<=", 1.5) == "SKIP"

    def test_missing_greenworks_module_runs_baselines_and_skips_targets(self):
        """Without its greenworks module a scenario still runs its baselines; its targets read SKIP."""

        def probe(bench):
            variants = [("raw", "baseline", lambda: Measured(1.0, 1, 1))]
            if bench.available:
                variants.append(("gw", "greenworks", lambda: Measured(1.0, 1, 1)))
            medians = bench.interleave(variants)
            bench.target("t", medians.get("gw"), ">=", 1.0)

        _harness.scenario("probe", "probe", requires=("greenworks.no_such_module",), sizes={"tiny": {}})(
            probe
        )
        try:
            result = run_scenario("probe", "tiny", out=lambda line: None)
        finally:
            del SCENARIOS["probe"]
        assert list(result["measurements"]["probe"]) == ["raw"]
        assert result["targets"][0]["verdict"] == "SKIP"
        assert "greenworks.no_such_module" in result["skipped"][0]

    def test_percentile_is_nearest_rank(self):
        """p50 and p99 use the nearest-rank definition."""
        values = list(range(1, 101))
        assert _harness.percentile(values, 50) == 50
        assert _harness.percentile(values, 99) == 99
        assert _harness.percentile([5.0], 99) == 5.0

    def test_machine_line_names_cpu_cores_and_versions(self):
        """The machine line carries the CPU model, core count and the Python, gevent and greenlet versions."""
        import gevent
        import greenlet

        info = _harness.machine_info()
        line = _harness.machine_line(info)
        assert info["cpu"] in line and "%s cores" % os.cpu_count() in line
        assert gevent.__version__ in line and greenlet.__version__ in line and info["python"] in line


class TestDispatcherScenarios:
    def test_trivial_runs_every_task_on_every_pool(self):
        """Every pool ran bursts x burst tasks; the Dispatcher had its workers and counted them executed."""
        result = tiny("trivial")
        p = result["params"]
        total = p["bursts"] * p["burst"]
        assert_all_greenworks_ran(result)
        for name, reps in works(result).items():
            assert [w["done"] for w in reps] == [total] * result["repeat"], name
        gw = works(result)["greenworks Dispatcher.dispatch"]
        assert all(
            w["workers"] == p["workers"] and w["executed"] == total and w["after_quit"] == 0 for w in gw
        )

    def test_submit_reads_every_result_back(self):
        """Every handle of the submit scenario resolved, and the values add up to sum(range(n))."""
        result = tiny("submit")
        total = result["params"]["bursts"] * result["params"]["burst"]
        assert_all_greenworks_ran(result)
        for name, reps in works(result).items():
            assert all(w["done"] == total and w["value_sum"] == total * (total - 1) // 2 for w in reps), name

    def test_wakeup_wakes_once_per_task_with_all_workers_parked(self):
        """Each wake-up variant ran one task per wake-up with exactly its idle pool alive."""
        result = tiny("wakeup")
        p = result["params"]
        assert_all_greenworks_ran(result)
        reps = works(result)
        assert len(reps) == 2 * len(p["idle"])
        for idle in p["idle"]:
            for name in ("greenworks, %d idle" % idle, "raw SimpleQueue, %d idle" % idle):
                assert all(w["done"] == p["wakeups"] and w["workers"] == idle for w in reps[name]), name

    def test_io_runs_every_sleeping_task(self):
        """Every I/O-like task slept and counted itself, on every pool."""
        result = tiny("io")
        assert_all_greenworks_ran(result)
        for name, reps in works(result).items():
            assert all(w["done"] == result["params"]["tasks"] for w in reps), name


class TestRunnerScenarios:
    def test_reconcile_replaces_exactly_the_changed_tasks(self):
        """Both reconcilers started every new worker, stopped exactly the stale ones and kept the rest."""
        result = tiny("reconcile")
        total = result["params"]["tasks"]
        replaced = total * result["params"]["replace_pct"] // 100
        assert_all_greenworks_ran(result)
        for name, reps in works(result).items():
            for w in reps:
                assert (w["done"], w["starts"], w["exits"], w["workers"]) == (
                    replaced,
                    total + replaced,
                    replaced,
                    total,
                ), name

    def test_reapply_starts_and_stops_nothing(self):
        """Re-applying an equal set neither started nor stopped a worker, and every task stayed tracked."""
        result = tiny("reapply")
        total = result["params"]["tasks"]
        assert_all_greenworks_ran(result)
        for name, reps in works(result).items():
            assert all((w["done"], w["starts"], w["exits"]) == (total, total, 0) for w in reps), name


class TestOtherScenarios:
    def test_memory_counts_live_parked_workers_and_real_growth(self):
        """Each memory child had every worker alive when measured, none after stop, and the process grew."""
        result = tiny("memory")
        count = result["params"]["workers"]
        assert_all_greenworks_ran(result)
        assert len(result["measurements"]) == 2  # RSS, and tracemalloc for information
        for group in result["measurements"]:
            for name, reps in works(result, group).items():
                assert all(w["done"] == count and w["total_bytes"] > 0 for w in reps), (group, name)

    def test_memory_judges_each_component_against_its_own_raw_baseline(self):
        """The Runner is judged against a raw greenlet parked in a Python worker function, the
        Dispatcher against one parked in a C method; the Runner against the latter is a note."""
        result = tiny("memory")
        assert set(works(result)) == {
            "greenworks Dispatcher",
            "greenworks Runner",
            "raw parked greenlets",
            "raw parked Python workers",
        }
        rss = {name: entry["median"] for name, entry in result["measurements"]["rss"].items()}
        targets = {t["target"]: t for t in result["targets"]}
        assert sorted(targets) == [
            "dispatcher RSS bytes/worker vs raw parked",
            "runner RSS bytes/worker vs raw parked Python worker",
        ]
        runner = targets["runner RSS bytes/worker vs raw parked Python worker"]
        assert runner["value"] == pytest.approx(rss["greenworks Runner"] / rss["raw parked Python workers"])
        dispatcher = targets["dispatcher RSS bytes/worker vs raw parked"]
        raw = rss["raw parked greenlets"]
        assert dispatcher["value"] == pytest.approx(rss["greenworks Dispatcher"] / raw)
        assert any(note.startswith("runner vs raw parked greenlets") for note in result["notes"])

    def test_taskmanager_runs_every_named_task(self):
        """Every named task ran once and the manager kept its workers."""
        result = tiny("taskmanager")
        p = result["params"]
        assert_all_greenworks_ran(result)
        for name, reps in works(result).items():
            assert all(w["done"] == p["tasks"] for w in reps), name
        assert all(w["workers"] == p["workers"] for w in works(result)["greenworks TaskManager.go"])

    def test_jobs_run_every_evaluated_job_once(self):
        """Every job the window evaluated as due ran once, whole ticks at a time, on both variants."""
        result = tiny("jobs")
        p = result["params"]
        ticks = round(p["seconds"] / p["tick"])
        assert_all_greenworks_ran(result, optional_peer="APScheduler")
        reps = works(result)
        for name in (bench_jobs.GW, bench_jobs.GRID):
            for w in reps[name]:
                assert w["ticks"] == ticks and w["orphan_runs"] == 0, name
                assert w["runs"] == w["evaluations"] == w["ticks_complete"] * p["jobs"] > 0, name
                assert w["cpu_per_tick"] > 0, name
        assert all(isinstance(w["missed_ticks_total"], int) for w in reps[bench_jobs.GW])
        if bench_jobs.APS in reps:
            # APScheduler may skip a late run (its max_instances): each run it made was evaluated once.
            assert all(
                w["orphan_runs"] == 0 and w["runs"] == w["evaluations"] > 0 for w in reps[bench_jobs.APS]
            )
        else:
            assert any("APScheduler variant skipped" in note for note in result["notes"])

    def test_jobs_are_judged_as_ratios_to_the_grid_of_the_same_run(self):
        """The lateness and CPU targets are the JobRunner's figures over the grid's, from the same run."""
        result = tiny("jobs")
        targets = {t["target"]: t for t in result["targets"]}
        summary = result["jobs_summary"]
        gw, grid = summary[bench_jobs.GW], summary[bench_jobs.GRID]
        lateness = targets["job start lateness p99 vs ideal grid (same run)"]
        assert lateness["value"] == pytest.approx(gw["job_p99"] / grid["job_p99"])
        assert (lateness["op"], lateness["threshold"]) == ("<=", 1.5)
        cpu = targets["CPU per %d-job tick vs inline loop (grid)" % result["params"]["jobs"]]
        assert cpu["value"] == pytest.approx(gw["cpu_per_tick"] / grid["cpu_per_tick"])
        assert (cpu["op"], cpu["threshold"]) == ("<=", 5.0)

    def test_jobs_without_apscheduler_skip_its_target_with_a_note(self, monkeypatch):
        """Without APScheduler the scenario still runs; its target reads SKIP and a note says why."""
        monkeypatch.setattr(bench_jobs, "import_optional", lambda name: (None, "%s not importable" % name))
        result = tiny("jobs")
        assert sorted(works(result)) == sorted([bench_jobs.GW, bench_jobs.GRID])
        verdicts = {t["target"]: t["verdict"] for t in result["targets"]}
        assert verdicts["job start lateness p99 vs APScheduler"] == "SKIP"
        assert any("APScheduler variant skipped" in note for note in result["notes"])


class TestExecutorScenario:
    @pytest.mark.timeout(120)
    def test_executor_runs_every_task_on_every_executor(self):
        """Every executor, the unpatched and the futurist children included, ran each task once."""
        result = tiny("executor")
        p = result["params"]
        futurist = bench_executor.futurist_missing() is None
        for t in result["targets"]:
            assert t["verdict"] in (
                ("PASS", "MISS") if futurist or "futurist" not in t["target"] else ("SKIP",)
            )
        assert sorted(result["measurements"]) == ["io", "trivial"]
        for group, total in (("trivial", p["bursts"] * p["burst"]), ("io", p["io_tasks"])):
            reps = works(result, group)
            # io adds bare greenlets doing the same sleeps: on gevent, and on eventlet beside futurist.
            bare = 0 if group == "trivial" else (2 if futurist else 1)
            assert len(reps) == (5 if futurist else 4) + bare, group
            assert any(name.startswith("futurist") for name in reps) == futurist
            assert sum(1 for name in reps if "bare greenlets" in name) == bare
            for name, runs in reps.items():
                assert all(w["done"] == total for w in runs), (group, name)
        assert len(result["notes"]) == (3 if futurist else 4)
        if futurist:
            # The io target against futurist is its plain ratio over the two hubs' bare-sleep ratio.
            medians = {name: entry["median"] for name, entry in result["measurements"]["io"].items()}
            (hub_target,) = [t for t in result["targets"] if "its hub's bare sleeps" in t["target"]]
            mine = next(v for k, v in medians.items() if k.startswith("greenworks"))
            green = next(v for k, v in medians.items() if k.startswith("futurist"))
            bare_gevent = next(v for k, v in medians.items() if k.endswith("sleeping, gevent"))
            bare_eventlet = next(
                v for k, v in medians.items() if k.endswith("eventlet child") and "bare" in k
            )
            assert hub_target["value"] == pytest.approx((mine / green) / (bare_gevent / bare_eventlet))

    @pytest.mark.timeout(120)
    def test_executor_without_futurist_skips_its_targets_with_a_note(self, monkeypatch):
        """Without futurist (or eventlet) its variant is left out, its targets read SKIP, a note says why."""
        monkeypatch.setattr(bench_executor, "futurist_missing", lambda: "futurist not importable (probe)")
        result = tiny("executor")
        for group in ("io", "trivial"):
            assert not any(name.startswith("futurist") for name in works(result, group))
        futurist_targets = [t for t in result["targets"] if "futurist" in t["target"]]
        assert len(futurist_targets) == 2 and all(t["verdict"] == "SKIP" for t in futurist_targets)
        assert any("futurist variant skipped: futurist not importable (probe)" in n for n in result["notes"])


class TestStreamsScenario:
    @pytest.mark.timeout(60)
    def test_streams_drains_every_message_on_every_variant(self):
        """Every variant handled each message once and left nothing pending, or the scenario says why not."""
        result = tiny("streams")
        p = result["params"]
        if not result["measurements"]:  # no redis-server or redis-py here
            assert [t["verdict"] for t in result["targets"]] == ["SKIP", "SKIP"] and result["notes"]
            return
        reps = works(result)
        assert_all_greenworks_ran(result, optional_peer="rq")
        if "rq SimpleWorker" not in reps:
            assert result["targets"][1]["verdict"] == "SKIP"
        for name in ("greenworks StreamConsumer", "hand-written XREADGROUP/XACK loop"):
            assert all(w["done"] == p["messages"] for w in reps[name]), name
        assert all(w["pending_after"] == 0 for w in reps["greenworks StreamConsumer"])
        if "rq SimpleWorker" in reps:
            assert all(w["done"] == p["rq_jobs"] for w in reps["rq SimpleWorker"])

    def test_the_handler_counts_each_call(self):
        """The shared handler and the rq job count their calls, which is what the work check reads."""
        bench_streams.Count.n = 0
        bench_streams.handler(1, "x", k=2)
        bench_streams.rq_job(1, "x", k=2)
        assert bench_streams.Count.n == 2


class TestJobLatenessArithmetic:
    def fill(self, job, tick_runs):
        """Record evaluations and runs by hand: ``{boundary index: start time}``."""
        for index, started in tick_runs.items():
            job.evaluated.append(index)
            job.run_index.append(index)
            job.run_started.append(started)

    def test_lateness_is_measured_from_each_runs_own_boundary(self):
        """Lateness is start time minus the run's boundary; p99, tick start and drift follow from it."""
        tick = 0.1
        first, second = bench_jobs.StandingJob("a", tick), bench_jobs.StandingJob("b", tick)
        self.fill(first, {10: 1.001, 11: 1.102, 12: 1.201})
        self.fill(second, {10: 1.003, 11: 1.104, 12: 1.209})
        figures = bench_jobs.analyse([first, second], tick, 0.0, 10, 12)
        assert figures["ticks"] == figures["ticks_complete"] == 3
        assert figures["runs"] == figures["evaluations"] == 6
        assert figures["job_max"] == pytest.approx(0.009)
        assert figures["tick_start_p99"] == pytest.approx(0.002)
        assert figures["drift"] == pytest.approx(0.0)

    def test_a_missing_tick_and_runs_outside_the_window_are_told_apart(self):
        """A boundary nobody ran reads as missing; runs outside the window do not count."""
        tick = 0.1
        job = bench_jobs.StandingJob("a", tick)
        self.fill(job, {9: 0.9, 10: 1.0, 12: 1.2, 13: 1.3})
        figures = bench_jobs.analyse([job], tick, 0.0, 10, 12)
        assert (figures["ticks"], figures["ticks_complete"], figures["ticks_missing"]) == (3, 2, 1)
        assert figures["runs"] == figures["evaluations"] == 2

    def test_a_run_without_an_evaluation_is_an_orphan(self):
        """run() with no pending evaluation is recorded as an orphan, which fails the work check."""
        job = bench_jobs.StandingJob("a", 0.1)
        job.run()
        assert bench_jobs.analyse([job], 0.1, 0.0, 0, 1)["orphan_runs"] == 1


class TestCommandLine:
    @pytest.mark.timeout(60)
    def test_quick_run_of_two_scenarios_exits_0_and_writes_json(self, tmp_path):
        """``run.py --quick --only`` prints the machine line and a summary, exits 0 and merges its JSON."""
        out = tmp_path / "results.json"
        proc = subprocess.run(
            [sys.executable, RUN, "--quick", "--only", "reapply,submit", "--json", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.startswith("machine: ")
        assert "== summary" in proc.stdout
        data = json.loads(out.read_text())
        assert sorted(data["scenarios"]) == ["reapply", "submit"]
        assert data["machine"]["gevent"] and len(data["targets"]) == 2

    def test_unknown_scenario_is_refused(self):
        """``--only`` with an unknown name exits with a usage error naming it."""
        proc = subprocess.run(
            [sys.executable, RUN, "--only", "nosuch"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2 and "nosuch" in proc.stderr


class TestEventsScenario:
    def test_events_counts_every_emission_dispatch_and_switch(self):
        """The subscriber got every event; both dispatch runs ran every task, switch runs every bounce."""
        import zope.event

        before = list(zope.event.subscribers)
        result = tiny("events")
        p = result["params"]
        assert_all_greenworks_ran(result)
        emit = works(result, "emit")
        assert [w["received"] for w in emit["Lifecycle.emit, one no-op subscriber"]] == [p["emits"]]
        assert [w["received"] for w in emit["Lifecycle.emit, no subscriber"]] == [0]
        total = p["bursts"] * p["burst"]
        for reps in works(result, "dispatch").values():
            assert [(w["done"], w["executed"]) for w in reps] == [(total, total)]
        for reps in works(result, "switch").values():
            assert [w["done"] for w in reps] == [p["switches"]]
        assert set(result["per_event_ns"]) == {"no_subscriber", "one_subscriber"}
        assert zope.event.subscribers == before


class TestScaleScenario:
    @pytest.mark.timeout(120)
    def test_every_curve_has_a_checked_point_per_size(self):
        """Each curve has a point per size and variant (Pool.spawn stops at pool_max); all work checked."""
        result = tiny("scale")
        p = result["params"]
        assert_all_greenworks_ran(result)
        curves = result["curves"]
        assert sorted(curves) == ["apply", "reapply", "tasks", "wakeup"]
        tasks = curves["tasks"]["series"]
        assert tasks["greenworks Dispatcher.dispatch"] and all(
            v > 0 for v in tasks["greenworks Dispatcher.dispatch"]
        )
        pool = tasks["gevent Pool(%d).spawn" % p["workers"]]
        assert [v is None for v in pool] == [n > p["pool_max"] for n in p["tasks"]]
        for key, sizes in (("wakeup", p["idle"]), ("apply", p["apply"]), ("reapply", p["apply"])):
            assert curves[key]["x"] == sizes
            for name, values in curves[key]["series"].items():
                assert len(values) == len(sizes) and all(v > 0 for v in values), (key, name)
        for total in p["tasks"]:
            for name, reps in works(result, "tasks %d" % total).items():
                assert all(w["done"] == total for w in reps), name
        for idle in p["idle"]:
            for name, reps in works(result, "wakeup %d idle" % idle).items():
                assert all(w["done"] == p["wakeups"] and w["workers"] == idle for w in reps), name
        for total in p["apply"]:
            for name, reps in works(result, "apply %d" % total).items():
                assert all(w["done"] == total and w["starts"] == total for w in reps), name
        # A size above apply_once_above is measured once, without a warm-up.
        big = [n for n in p["apply"] if n > p["apply_once_above"]]
        assert big and all(len(works(result, "apply %d" % n)["raw dict diff + spawn"]) == 1 for n in big)


def _results_file(tmp_path, curves=True):
    scale = {
        "name": "scale",
        "targets": [],
        "measurements": {},
        "curves": {
            "tasks": {
                "title": "per-task cost",
                "x_label": "tasks",
                "x": [1000, 10000],
                "unit": "s",
                "series": {"a": [1e-6, 2e-6], "b": [3e-6, None]},
            }
        }
        if curves
        else {},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"machine": _harness.machine_info(), "scenarios": {"scale": scale}}))
    return path


class TestCharts:
    def test_a_chart_per_curve_is_written(self, tmp_path):
        """draw() writes one PNG per curve of the results file (or, without matplotlib, says so)."""
        out = tmp_path / "charts"
        paths, note = charts.draw(str(_results_file(tmp_path)), str(out))
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            assert paths == [] and "matplotlib" in note
            return
        assert note is None and paths == [str(out / "tasks.png")]
        assert (out / "tasks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_without_matplotlib_charts_are_skipped_with_a_note(self, tmp_path, monkeypatch):
        """A missing matplotlib is a note, never an error, and nothing is written."""
        monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
        out = tmp_path / "charts"
        paths, note = charts.draw(str(_results_file(tmp_path)), str(out))
        assert paths == [] and note.startswith("charts skipped: matplotlib not importable")
        assert not out.exists()

    def test_a_file_without_curves_says_so(self, tmp_path):
        """A results file without the scale scenario draws nothing and says why."""
        paths, note = charts.draw(str(_results_file(tmp_path, curves=False)), str(tmp_path / "charts"))
        assert paths == [] and "no curves" in note


class TestMedianOfRuns:
    def run(self, value, median, points):
        return {
            "machine": {"cpu": "x"},
            "mode": "full",
            "scenarios": {
                "s": {
                    "name": "s",
                    "targets": [
                        {"scenario": "s", "target": "t", "value": value, "op": "<=", "threshold": 1.0}
                    ],
                    "measurements": {"g": {"v": {"median": median, "cpu_median": median / 2}}},
                    "curves": {"c": {"x": [1, 2], "series": {"v": points}}},
                }
            },
        }

    def test_figures_and_verdicts_are_the_medians_of_the_runs(self):
        """Targets, variant medians and curve points are medians over the runs; verdicts judged on them."""
        from benchmarks import run as run_module

        combined = run_module.combine(
            [self.run(0.5, 3.0, [1.0, 4.0]), self.run(2.0, 1.0, [2.0, 5.0]), self.run(1.5, 2.0, [3.0, 6.0])]
        )
        assert combined["runs"] == 3
        scenario = combined["scenarios"]["s"]
        target = scenario["targets"][0]
        assert (target["value"], target["verdict"], target["run_values"]) == (1.5, "MISS", [0.5, 2.0, 1.5])
        entry = scenario["measurements"]["g"]["v"]
        assert (entry["median"], entry["cpu_median"], entry["run_median"]) == (2.0, 1.0, [3.0, 1.0, 2.0])
        assert scenario["curves"]["c"]["series"]["v"] == [2.0, 5.0]

    def test_median_of_is_checked(self):
        """--median-of 0 is refused with a usage error naming the value."""
        proc = subprocess.run(
            [sys.executable, RUN, "--median-of", "0"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2 and "--median-of must be >= 1, got 0" in proc.stderr
