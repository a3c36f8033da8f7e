"""
The measuring machinery shared by every scenario.

A scenario is a function ``scenario(bench)`` registered with :func:`scenario`.
It reads its sizes from ``bench.params`` (``full``, ``quick`` or ``tiny``),
measures its variants with :meth:`Bench.interleave` and states its targets
with :meth:`Bench.target`.

Rules every measurement follows:

- Variants run in the same process, interleaved (``g, b1, b2, g, b1, b2,
  ...``), so a noisy neighbour slows all of them alike; the median of the
  repetitions is what is compared.
- ``gc.collect()`` runs before each variant so one variant's garbage is not
  collected on another's clock; the collector stays enabled while timing,
  because applications run with it.
- Every variant returns the work it did next to its measurement, and the
  harness raises :class:`WorkNotDone` unless ``done == expected``: a variant
  cannot look fast by skipping work.
- Time is read with ``time.perf_counter``; benchmarks are not library code.
"""

import datetime
import gc
import importlib
import math
import os
import platform
import statistics
import sys
import time

__all__ = [
    "SCENARIOS",
    "Bench",
    "Measured",
    "Stopwatch",
    "WorkNotDone",
    "import_optional",
    "machine_info",
    "machine_line",
    "percentile",
    "scenario",
]

#: Registered scenarios, in the order the report lists them.
SCENARIOS = {}

#: How many measured repetitions each mode makes unless ``--repeat`` says otherwise.
DEFAULT_REPEAT = {"full": 5, "quick": 1, "tiny": 1}


class WorkNotDone(AssertionError):
    """A variant reported less (or more) work than it was asked to do."""


class Measured:
    """One repetition of one variant: the measured value and the work that was checked.

    :param value: the measurement, in the variant's unit (seconds unless said),
        or a stopped :class:`Stopwatch` (its wall time, with its CPU time as *cpu*).
    :param int done: units of work the work itself counted (tasks run, workers alive).
    :param int expected: units of work the variant was asked for.
    :param float cpu: process CPU seconds over the same span, when the value is a time.
    :param extra: further facts worth keeping in results.json.
    """

    __slots__ = ("cpu", "done", "expected", "extra", "value")

    def __init__(self, value, done, expected, cpu=None, **extra):
        if isinstance(value, Stopwatch):
            value, cpu = value.wall, value.cpu
        self.value = value
        self.done = done
        self.expected = expected
        self.cpu = cpu
        self.extra = extra


class Stopwatch:
    """Wall time (``perf_counter``) and process CPU time (``process_time``) of one span.

    The wall time is the figure judged. On a machine shared with other busy
    processes the CPU time is the steadier one (it leaves out the time this
    process waited for a core), so it is reported next to it.
    """

    __slots__ = ("_cpu0", "_wall0", "cpu", "wall")

    def __init__(self):
        self.wall = self.cpu = None
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()

    def stop(self):
        """Stop the watch and return the wall seconds (``cpu`` holds the CPU seconds)."""
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0
        return self.wall


def scenario(name, title, requires=(), sizes=None, repeat=None, warmup=None):
    """Register ``func(bench)`` as the scenario *name*.

    :param tuple requires: greenworks modules the greenworks variants need;
        when one cannot be imported the baselines still run and the targets
        read SKIP.
    :param dict sizes: ``{"full": {...}, "quick": {...}, "tiny": {...}}``.
    :param dict repeat: per-mode default repetitions overriding :data:`DEFAULT_REPEAT`.
    :param bool warmup: whether to run an unmeasured first round (None: in full mode only).
    """

    def register(func):
        SCENARIOS[name] = {
            "name": name,
            "title": title,
            "func": func,
            "requires": tuple(requires),
            "sizes": sizes or {"full": {}, "quick": {}, "tiny": {}},
            "repeat": dict(DEFAULT_REPEAT, **(repeat or {})),
            "warmup": warmup,
            "doc": (func.__doc__ or "").strip(),
        }
        return func

    return register


def import_optional(name):
    """Return the module *name*, or None with the reason when it cannot be imported."""
    try:
        return importlib.import_module(name), None
    except ImportError as exc:
        return None, "%s not importable (%s)" % (name, exc)


def percentile(values, pct):
    """Return the *pct* percentile of *values* (nearest rank, as latency reports use)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    """Return the facts that make two runs comparable (CPU, cores, versions, date, load)."""
    import gevent
    import greenlet

    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "gevent": gevent.__version__,
        "greenlet": greenlet.__version__,
        "gevent_loop": type(gevent.get_hub().loop).__module__,
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "loadavg": [round(x, 2) for x in load],
    }


def machine_line(info):
    """Return *info* as the one line every report starts with."""
    return "machine: %s, %s cores, %s %s, gevent %s, greenlet %s, %s, load %s" % (
        info["cpu"],
        info["cores"],
        info["implementation"],
        info["python"],
        info["gevent"],
        info["greenlet"],
        info["date"],
        "/".join("%.2f" % x for x in info["loadavg"]),
    )


def format_value(value, unit):
    """Return *value* in a readable scale of *unit* (``s``, ``B``, ``ms``, ``x``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "s":
        for scale, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
            if abs(value) >= scale:
                return "%.3g %s" % (value / scale, name)
        return "%.3g ns" % (value * 1e9)
    if unit == "B":
        if abs(value) >= 1024:
            return "%.2f KiB" % (value / 1024.0)
        return "%.0f B" % value
    if unit == "x":
        return "%.2fx" % value
    return "%.4g %s" % (value, unit)


class Bench:
    """One run of one scenario: its sizes, its measurements and its verdicts.

    :param dict spec: the registered scenario.
    :param str mode: ``full``, ``quick`` or ``tiny``.
    :param int repeat: measured repetitions per variant (None: the mode's default).
    :param bool warmup: run one unmeasured round first (full mode does).
    """

    def __init__(self, spec, mode, repeat=None, warmup=None, out=print):
        self.spec = spec
        self.name = spec["name"]
        self.mode = mode
        self.params = dict(spec["sizes"][mode])
        self.repeat = repeat if repeat is not None else spec["repeat"][mode]
        if warmup is None:
            warmup = spec["warmup"]
        self.warmup = (mode == "full") if warmup is None else warmup
        self.out = out
        self.modules = {}
        self.missing = []
        for module in spec["requires"]:
            loaded, reason = import_optional(module)
            if loaded is None:
                self.missing.append(reason)
            self.modules[module] = loaded
        self.result = {
            "name": self.name,
            "title": spec["title"],
            "mode": mode,
            "params": self.params,
            "repeat": self.repeat,
            "measurements": {},
            "targets": [],
            "notes": [],
            "skipped": list(self.missing),
        }

    @property
    def available(self):
        """Whether every greenworks module this scenario needs could be imported."""
        return not self.missing

    def interleave(self, variants, label=None, unit="s", per=None, repeat=None, warmup=None):
        """Measure *variants* round-robin and return ``{name: median value}``.

        :param variants: list of ``(name, role, func)``; ``func()`` runs one
            repetition and returns a :class:`Measured`. ``role`` is
            ``"greenworks"`` or ``"baseline"``.
        :param str label: key of this group in the results (default: the scenario name).
        :param str unit: unit of the values (``s`` for seconds, ``B`` for bytes).
        :param int per: divide medians by this to print a per-task figure.
        :param int repeat: measured repetitions of this group (default: the scenario's).
        :param bool warmup: whether this group has a warm-up round (default: the scenario's).
        :raises WorkNotDone: if any repetition did not do exactly its work.
        """
        label = label or self.name
        samples = {name: [] for name, _, _ in variants}
        cpus = {name: [] for name, _, _ in variants}
        works = {name: [] for name, _, _ in variants}
        repeat = self.repeat if repeat is None else repeat
        warmup = self.warmup if warmup is None else warmup
        rounds = repeat + (1 if warmup else 0)
        for index in range(rounds):
            for name, _role, func in variants:
                gc.collect()
                measured = func()
                if not isinstance(measured, Measured):
                    raise TypeError("variant %r returned %r, not Measured" % (name, measured))
                if measured.done != measured.expected:
                    raise WorkNotDone(
                        "%s/%s: did %r units of work, expected %r"
                        % (label, name, measured.done, measured.expected)
                    )
                if warmup and index == 0:
                    continue
                samples[name].append(measured.value)
                if measured.cpu is not None:
                    cpus[name].append(measured.cpu)
                works[name].append(dict(measured.extra, done=measured.done, expected=measured.expected))
        group = {}
        medians = {}
        for name, role, _ in variants:
            median = statistics.median(samples[name])
            medians[name] = median
            group[name] = {
                "role": role,
                "unit": unit,
                "median": median,
                "samples": samples[name],
                "work": works[name],
            }
            if per:
                group[name]["per_task_median"] = median / per
            if cpus[name]:
                group[name]["cpu_median"] = statistics.median(cpus[name])
                group[name]["cpu_samples"] = cpus[name]
        self.result["measurements"][label] = group
        self._print_group(label, variants, group, unit, per)
        return medians

    def _print_group(self, label, variants, group, unit, per):
        if label != self.name:
            self.out("  [%s]" % label)
        width = max(len(name) for name, _, _ in variants)
        for name, _role, _ in variants:
            entry = group[name]
            line = "    %-*s  median %-11s" % (width, name, format_value(entry["median"], unit))
            if per:
                line += "  per task %-10s" % format_value(entry["median"] / per, unit)
            if "cpu_median" in entry:
                line += "  cpu %-10s" % format_value(entry["cpu_median"], unit)
            if len(entry["samples"]) > 1:
                line += "  (%s)" % ", ".join(format_value(v, unit) for v in entry["samples"])
            self.out(line)

    def cpu(self, label=None):
        """Return ``{variant: median CPU seconds}`` of the group *label* (variants that have one)."""
        group = self.result["measurements"][label or self.name]
        return {name: entry["cpu_median"] for name, entry in group.items() if "cpu_median" in entry}

    def cpu_ratio(self, numerator, denominator, label=None):
        """Return ``"cpu-time ratio N.NNx"`` for two variants of group *label*, or "" if either lacks one."""
        cpu = self.cpu(label)
        if numerator in cpu and denominator in cpu and cpu[denominator] > 0:
            return "cpu-time ratio %.2fx" % (cpu[numerator] / cpu[denominator])
        return ""

    def target(self, label, value, op, threshold, unit="x", detail=""):
        """Record the target *label*: ``value op threshold`` (``op`` is ``>=`` or ``<=``).

        A *value* of None (greenworks module missing) records SKIP.
        """
        if value is None:
            verdict = "SKIP"
        elif op == ">=":
            verdict = "PASS" if value >= threshold else "MISS"
        elif op == "<=":
            verdict = "PASS" if value <= threshold else "MISS"
        else:
            raise ValueError("op must be '>=' or '<=', got %r" % (op,))
        entry = {
            "scenario": self.name,
            "target": label,
            "value": value,
            "op": op,
            "threshold": threshold,
            "unit": unit,
            "verdict": verdict,
            "detail": detail,
        }
        self.result["targets"].append(entry)
        self.out(
            "  target %-44s %s %-8s got %-10s %s%s"
            % (
                label,
                op,
                format_value(threshold, unit),
                format_value(value, unit),
                verdict,
                ("  (" + detail + ")") if detail else "",
            )
        )
        return verdict

    def note(self, text):
        """Record and print a remark that belongs with the figures."""
        self.result["notes"].append(text)
        self.out("  note: %s" % text)


def run_scenario(name, mode, repeat=None, warmup=None, out=print):
    """Run the scenario *name* and return its result dict (raises what the scenario raises)."""
    spec = SCENARIOS[name]
    bench = Bench(spec, mode, repeat=repeat, warmup=warmup, out=out)
    out("== %s: %s" % (name, spec["title"]))
    if bench.missing:
        out("  greenworks variants skipped: %s" % "; ".join(bench.missing))
    started = time.perf_counter()
    spec["func"](bench)
    bench.result["elapsed"] = time.perf_counter() - started
    sys.stdout.flush()
    return bench.result
