"""
Run the greenworks benchmarks: ``python benchmarks/run.py [--quick] [--only NAME] [--median-of N]``.

The full run measures every scenario at the sizes of its issue, several
interleaved repetitions each, prints PASS/MISS per target, merges its
figures into ``benchmarks/results.json`` and draws the scale curves into
``benchmarks/charts/`` (when matplotlib is installed; otherwise it says so).
``--median-of N`` makes N such runs, each in a fresh process, and keeps the
median of the N runs for every figure and target (the quoted figures). ``--quick`` runs every scenario
once at a small size: it checks the scripts work (CI runs it) and never
judges timings. The exit status is 0 unless a scenario failed to run or did
not do its work; a missed target never changes it.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import gevent  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import (  # noqa: E402  (registers the scenarios)
    bench_cluster,  # noqa: F401
    bench_dispatcher,  # noqa: F401
    bench_events,  # noqa: F401
    bench_executor,  # noqa: F401
    bench_jobs,  # noqa: F401
    bench_memory,  # noqa: F401
    bench_runner,  # noqa: F401
    bench_scale,  # noqa: F401
    bench_streams,  # noqa: F401
    bench_taskmanager,  # noqa: F401
    charts,
)
from benchmarks._harness import SCENARIOS, format_value, machine_info, machine_line, run_scenario  # noqa: E402

RESULTS_PATH = os.path.join(HERE, "results.json")

#: The order of the issue's table.
ORDER = [
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

#: A scenario that runs longer than this is a hang, not a slow result.
SCENARIO_TIME_LIMIT = {"full": 900.0, "quick": 60.0, "tiny": 60.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition (a smoke test)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this scenario (repeatable, or a,b)",
    )
    parser.add_argument(
        "--repeat", type=int, default=None, metavar="N", help="measured repetitions per variant"
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the unmeasured warm-up round")
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="where to merge results (full run default: benchmarks/results.json; quick: none)",
    )
    parser.add_argument(
        "--median-of",
        type=int,
        default=1,
        metavar="N",
        help="make N whole runs, each in a fresh process, and keep the median of each figure",
    )
    parser.add_argument("--no-charts", action="store_true", help="do not draw benchmarks/charts/*.png")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the figures of the results file (--json or benchmarks/results.json) as Markdown and exit",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for chunk in args.only for n in chunk.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error("unknown scenario(s) %s; choose from %s" % (", ".join(unknown), ", ".join(SCENARIOS)))
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be >= 1, got %r" % args.repeat)
    if args.median_of < 1:
        parser.error("--median-of must be >= 1, got %r" % args.median_of)
    args.names = names or sorted(SCENARIOS, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return args


def merge_results(path, machine, mode, results):
    """Merge *results* into the JSON file at *path*, keeping scenarios not run this time."""
    data = {}
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
    data["machine"] = machine
    data["mode"] = mode
    scenarios = data.setdefault("scenarios", {})
    for result in results:
        scenarios[result["name"]] = dict(result, machine=machine)
    order = [name for name in ORDER if name in scenarios] + sorted(set(scenarios) - set(ORDER))
    data["scenarios"] = {name: scenarios[name] for name in order}
    data["targets"] = [t for name in order for t in scenarios[name]["targets"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def _verdict(value, op, threshold):
    if value is None:
        return "SKIP"
    if op == ">=":
        return "PASS" if value >= threshold else "MISS"
    return "PASS" if value <= threshold else "MISS"


def _median(values):
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def combine(runs):
    """Return one result dict from the result dicts *runs* of several whole runs: medians throughout.

    Per target the value is the median of the runs' values (its verdict
    judged again on it), the runs' values kept in ``run_values``; per
    variant the median is the median of the runs' medians; per curve point
    the median of the runs' points. A scenario missing from a run (it failed
    there) is combined from the runs that have it.
    """
    first = runs[0]
    combined = {"machine": first["machine"], "mode": first["mode"], "runs": len(runs), "scenarios": {}}
    names = list(first["scenarios"]) + [
        n for run in runs[1:] for n in run["scenarios"] if n not in first["scenarios"]
    ]
    for name in dict.fromkeys(names):
        results = [run["scenarios"][name] for run in runs if name in run["scenarios"]]
        merged = json.loads(json.dumps(results[0]))
        merged["runs"] = len(results)
        for index, target in enumerate(merged["targets"]):
            values = [r["targets"][index]["value"] for r in results if len(r["targets"]) > index]
            target["run_values"] = values
            target["value"] = _median(values)
            target["verdict"] = _verdict(target["value"], target["op"], target["threshold"])
        for label, group in merged["measurements"].items():
            for variant, entry in group.items():
                for key in ("median", "per_task_median", "cpu_median"):
                    if key in entry:
                        entry["run_" + key] = [
                            r["measurements"][label][variant].get(key)
                            for r in results
                            if variant in r["measurements"].get(label, {})
                        ]
                        entry[key] = _median(entry["run_" + key])
        for key, curve in (merged.get("curves") or {}).items():
            for variant, points in curve["series"].items():
                per_run = [r["curves"][key]["series"].get(variant, []) for r in results if r.get("curves")]
                curve["series"][variant] = [
                    _median([p[i] for p in per_run if i < len(p)]) for i in range(len(points))
                ]
        combined["scenarios"][name] = merged
    return combined


def run_median_of(args, argv):
    """Make ``args.median_of`` whole runs in child processes; return (combined results, failed runs)."""
    child_argv = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--median-of", "--json"):
            skip = True
            continue
        if arg.startswith(("--median-of=", "--json=")):
            continue
        child_argv.append(arg)
    runs, failed = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.median_of):
            path = os.path.join(tmp, "run%d.json" % index)
            print("== run %d of %d" % (index + 1, args.median_of))
            sys.stdout.flush()
            code = subprocess.call(
                [sys.executable, os.path.abspath(__file__), *child_argv, "--no-charts", "--json", path]
            )
            failed += code != 0
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    runs.append(json.load(f))
    if not runs:
        raise SystemExit("no run produced results")
    return combine(runs), failed


def write_results(path, combined):
    """Merge the combined *results* of --median-of into *path*, keeping scenarios not run this time."""
    data = {}
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = {}
    # How many runs each scenario's figures are the median of is kept per scenario ("runs"):
    # scenarios not run this time keep their own.
    data.update(machine=combined["machine"], mode=combined["mode"])
    data.pop("runs", None)
    scenarios = data.setdefault("scenarios", {})
    scenarios.update(combined["scenarios"])
    order = [name for name in ORDER if name in scenarios] + sorted(set(scenarios) - set(ORDER))
    data["scenarios"] = {name: scenarios[name] for name in order}
    data["targets"] = [t for name in order for t in scenarios[name]["targets"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def draw_charts(path):
    paths, note = charts.draw(path)
    for chart in paths:
        print("chart written: %s" % os.path.relpath(chart))
    if note:
        print("note: %s" % note)


def markdown(path):
    """Return the figures stored at *path* as the Markdown table README.md shows."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    lines = [
        "| scenario | target | threshold | median | verdict | detail |",
        "|---|---|---|---|---|---|",
    ]
    for t in data["targets"]:
        detail = t["detail"]
        if t.get("run_values"):
            # --median-of: the value is the median of these; the detail is the first run's.
            runs = ", ".join(format_value(v, t["unit"]) for v in t["run_values"])
            detail = "runs: %s%s" % (runs, "; run 1: %s" % detail if detail else "")
        lines.append(
            "| %s | %s | %s %s | %s | %s | %s |"
            % (
                t["scenario"],
                t["target"],
                t["op"],
                format_value(t["threshold"], t["unit"]),
                format_value(t["value"], t["unit"]),
                t["verdict"],
                detail,
            )
        )
    lines.append("")
    lines.append("| scenario | variant | median | per task | cpu |")
    lines.append("|---|---|---|---|---|")
    for name in ORDER:
        result = data["scenarios"].get(name)
        if not result:
            continue
        for label, group in result["measurements"].items():
            for variant, entry in group.items():
                per = entry.get("per_task_median")
                cpu = entry.get("cpu_median")
                lines.append(
                    "| %s | %s%s | %s | %s | %s |"
                    % (
                        name,
                        variant,
                        "" if label == name else " (%s)" % label,
                        format_value(entry["median"], entry["unit"]),
                        "" if per is None else format_value(per, entry["unit"]),
                        "" if cpu is None else format_value(cpu, entry["unit"]),
                    )
                )
    for name in data["scenarios"]:
        for curve in (data["scenarios"][name].get("curves") or {}).values():
            names = list(curve["series"])
            lines.append("")
            lines.append("%s:" % curve["title"])
            lines.append("")
            lines.append("| %s | %s |" % (curve["x_label"], " | ".join(names)))
            lines.append("|---|%s" % ("---|" * len(names)))
            for index, x in enumerate(curve["x"]):
                cells = []
                for variant in names:
                    values = curve["series"][variant]
                    cells.append(format_value(values[index] if index < len(values) else None, curve["unit"]))
                lines.append("| %s | %s |" % (f"{x:,}", " | ".join(cells)))
    return "\n".join(lines)


def print_summary(results, errors):
    rows = [t for r in results for t in r["targets"]]
    print()
    print("== summary (median ratios)")
    print("  %-12s %-44s %-12s %-10s %s" % ("scenario", "target", "threshold", "got", "verdict"))
    for t in rows:
        print(
            "  %-12s %-44s %-12s %-10s %s"
            % (
                t["scenario"],
                t["target"],
                "%s %s" % (t["op"], format_value(t["threshold"], t["unit"])),
                format_value(t["value"], t["unit"]),
                t["verdict"],
            )
        )
    for name, message in errors:
        print("  %-12s ERROR: %s" % (name, message))
    counts = {}
    for t in rows:
        counts[t["verdict"]] = counts.get(t["verdict"], 0) + 1
    print(
        "  %d targets: %s%s"
        % (
            len(rows),
            ", ".join("%d %s" % (counts[v], v) for v in ("PASS", "MISS", "SKIP") if v in counts) or "none",
            ("; %d scenario(s) FAILED to run" % len(errors)) if errors else "",
        )
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.list:
        for name, spec in SCENARIOS.items():
            print("%-12s %s" % (name, spec["title"]))
        return 0
    if args.markdown:
        print(markdown(args.json or RESULTS_PATH))
        return 0
    mode = "quick" if args.quick else "full"
    if args.median_of > 1:
        started = time.perf_counter()
        combined, failed = run_median_of(args, argv)
        results = list(combined["scenarios"].values())
        print()
        print("== median of %d runs" % combined["runs"])
        print_summary(results, [("run", "%d run(s) exited non-zero" % failed)] if failed else [])
        print("total %.1f s" % (time.perf_counter() - started))
        path = args.json or (RESULTS_PATH if mode == "full" else None)
        if path:
            write_results(path, combined)
            print("results (medians of %d runs) merged into %s" % (combined["runs"], os.path.relpath(path)))
            if not args.no_charts and mode == "full":
                draw_charts(path)
        return 1 if failed else 0
    machine = machine_info()
    print(machine_line(machine))
    print("mode: %s; scenarios: %s" % (mode, ", ".join(args.names)))
    results, errors = [], []
    started = time.perf_counter()
    for name in args.names:
        limit = SCENARIO_TIME_LIMIT[mode]
        try:
            with gevent.Timeout(limit, AssertionError("scenario %s still running after %ss" % (name, limit))):
                results.append(
                    run_scenario(name, mode, repeat=args.repeat, warmup=False if args.no_warmup else None)
                )
        except Exception as exc:
            traceback.print_exc()
            errors.append((name, "%s: %s" % (type(exc).__name__, exc)))
        sys.stdout.flush()
    print_summary(results, errors)
    print("total %.1f s" % (time.perf_counter() - started))
    path = args.json or (RESULTS_PATH if mode == "full" else None)
    if path:
        merge_results(path, machine, mode, results)
        print("results merged into %s" % os.path.relpath(path))
        if not args.no_charts and mode == "full":
            draw_charts(path)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
