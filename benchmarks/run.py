"""
Run the greenworks benchmarks: ``python benchmarks/run.py [--quick] [--only NAME] [--repeat N]``.

The full run measures every scenario at the sizes of its issue, several
interleaved repetitions each, prints PASS/MISS per target, and merges its
figures into ``benchmarks/results.json``. ``--quick`` runs every scenario
once at a small size: it checks the scripts work (CI runs it) and never
judges timings. The exit status is 0 unless a scenario failed to run or did
not do its work; a missed target never changes it.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
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


def markdown(path):
    """Return the figures stored at *path* as the Markdown table README.md shows."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    lines = [
        "| scenario | target | threshold | median | verdict | detail |",
        "|---|---|---|---|---|---|",
    ]
    for t in data["targets"]:
        lines.append(
            "| %s | %s | %s %s | %s | %s | %s |"
            % (
                t["scenario"],
                t["target"],
                t["op"],
                format_value(t["threshold"], t["unit"]),
                format_value(t["value"], t["unit"]),
                t["verdict"],
                t["detail"],
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
    args = parse_args(argv)
    if args.list:
        for name, spec in SCENARIOS.items():
            print("%-12s %s" % (name, spec["title"]))
        return 0
    if args.markdown:
        print(markdown(args.json or RESULTS_PATH))
        return 0
    mode = "quick" if args.quick else "full"
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
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
