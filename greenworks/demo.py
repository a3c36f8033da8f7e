"""
``python -m greenworks demo`` (``make demo``): the whole runtime in one process.

For ``--seconds`` (15 by default) one monkey-patched process runs, side by side:

- a **Runner** reconciling health checks of loopback HTTP servers the demo
  starts; the set of endpoints changes twice mid-run and one endpoint turns
  unhealthy for a while;
- a **Dispatcher** absorbing bursts of blocking-socket work (real sockets to a
  loopback server) and scaling up for each burst and back down after it;
- a **TaskManager** with two tasks reporting progress and one crash-looping
  task that is restarted, then given up on (``max_restarts``);
- a **JobRunner** ticking every second, with a slow job skipped by dedupe
  while its previous run is still in flight;
- ``run_all_workers`` running all of the above, so SIGINT/SIGTERM (or the end
  of ``--seconds``) stops everything cleanly and the demo exits 0.

On a terminal it redraws a compact status table; piped, it prints one plain
status line per second plus a line per event (reconcile changes, scaling,
restarts, ticks). The status page (:mod:`greenworks.status`) is served on
127.0.0.1 while it runs.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import IO, Any  # noqa: E402

import gevent  # noqa: E402
import gevent.socket  # noqa: E402
import zope.event  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from zope.interface import implementer  # noqa: E402

from greenworks import _greenlets, status  # noqa: E402
from greenworks._demo_support import Console, ConsoleLogHandler, HealthServer, WorkServer, bar  # noqa: E402
from greenworks._results import Result  # noqa: E402
from greenworks.backoff import StaticBackoff  # noqa: E402
from greenworks.clock import ClockLike, TimerHandleLike, get_clock  # noqa: E402
from greenworks.context import Context, with_cancel, with_timeout  # noqa: E402
from greenworks.dispatcher import Dispatcher  # noqa: E402
from greenworks.events import PoolScaled, TaskGaveUp, TaskRestarted  # noqa: E402
from greenworks.exceptions import SkippedDuplicateError  # noqa: E402
from greenworks.interfaces import IRestartableTask, ITaskWithProgress  # noqa: E402
from greenworks.jobs import JobRunner, job  # noqa: E402
from greenworks.runner import Runner  # noqa: E402
from greenworks.runutil import NamedWorker, named_worker, run_all_workers  # noqa: E402
from greenworks.taskmanager import TaskManager  # noqa: E402

__all__ = ["main"]

#: Seconds between two dispatcher bursts, and tasks per burst.
BURST_EVERY = 1.5
BURST_SIZE = 40
#: The dispatcher halves its idle pool after this long without dispatches.
SCALE_DOWN_WAIT = 0.4
#: Seconds without a scaling step before a scaling move is reported as one line.
SCALE_QUIET = 0.1
HEALTH_EVERY = 0.2
SLOW_REPORT_SECONDS = 1.5


# -- Runner: health checks ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A Runner task: one endpoint to health-check (hashable, immutable)."""

    name: str
    url: str


class HealthBoard:
    """What the health-check workers found, per endpoint."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.checks: dict[str, dict[str, Any]] = {}

    def record(self, endpoint: Endpoint, healthy: bool, detail: str) -> None:
        entry = self.checks.setdefault(endpoint.name, {"ok": 0, "failed": 0, "healthy": None})
        entry["ok" if healthy else "failed"] += 1
        if entry["healthy"] is not healthy:
            entry["healthy"] = healthy
            self.console.event(
                "runner", "%s is %s (%s)" % (endpoint.name, "healthy" if healthy else "UNHEALTHY", detail)
            )

    def check_worker(self, endpoint: Endpoint) -> Callable[[Context], None]:
        """``new_worker`` for the Runner: poll *endpoint* until the context is done."""

        def run(ctx: Context) -> None:
            while True:
                try:
                    with urllib.request.urlopen(endpoint.url, timeout=1.0) as response:
                        self.record(endpoint, True, "HTTP %d" % response.status)
                except urllib.error.HTTPError as error:
                    self.record(endpoint, False, "HTTP %d" % error.code)
                except OSError as error:
                    self.record(endpoint, False, type(error).__name__)
                if not ctx.sleep(HEALTH_EVERY):
                    return

        return run


def runner_worker(runner: Runner, board: HealthBoard, seconds: float, console: Console) -> NamedWorker:
    """Start endpoints, and change the set (and one endpoint's health) mid-run."""
    names = ("alpha", "beta", "gamma")
    # (when, what): fractions of the run, so --seconds 3 shows every step.
    script = [(0.30, "beta down"), (0.35, "add gamma"), (0.60, "beta up"), (0.65, "remove alpha")]

    def apply(servers: dict[str, HealthServer]) -> None:
        before = {task.name for task in runner.tasks()}
        runner.apply_tasks([Endpoint(name, servers[name].url) for name in sorted(servers)])
        after = {task.name for task in runner.tasks()}
        change = ["+" + n for n in sorted(after - before)] + ["-" + n for n in sorted(before - after)]
        console.event("runner", "reconciled %s: %d health-check workers" % (" ".join(change), len(after)))

    def run(ctx: Context) -> None:
        servers: dict[str, HealthServer] = {}
        retired: list[HealthServer] = []
        try:
            for name in names[:2]:
                servers[name] = HealthServer(name)
            apply(servers)
            for fraction, step in script:
                if not ctx.sleep(max(0.0, fraction * seconds - console.elapsed())):
                    break
                if step == "beta down":
                    servers["beta"].healthy = False
                elif step == "beta up":
                    servers["beta"].healthy = True
                elif step == "add gamma":
                    servers["gamma"] = HealthServer("gamma")
                    apply(servers)
                else:
                    retired.append(servers.pop("alpha"))
                    apply(servers)
            ctx.wait()
        finally:
            runner.stop()
            for server in [*servers.values(), *retired]:
                server.stop()

    return named_worker("health-checks", run)


# -- Dispatcher: bursts of blocking-socket work -------------------------------


def dispatcher_worker(dispatcher: Dispatcher, work_server: WorkServer, console: Console) -> NamedWorker:
    """Dispatch a burst of socket calls every BURST_EVERY seconds; report the pool's scaling."""

    def io_call() -> bytes:
        # Plain blocking socket code; monkey-patching makes it yield to the hub.
        with socket.create_connection(work_server.address, timeout=5) as sock:
            sock.sendall(b"work\n")
            return sock.recv(16)

    def run(ctx: Context) -> None:
        dispatcher.run()
        next_burst = 0.2
        try:
            while ctx.sleep(max(0.0, next_burst - console.elapsed())):
                next_burst += BURST_EVERY
                overflowed = sum(1 for _ in range(BURST_SIZE) if not dispatcher.dispatch(io_call))
                console.event(
                    "dispatcher",
                    "burst of %d socket calls (%d overflowed the buffer, kept on the stack)"
                    % (BURST_SIZE, overflowed),
                )
        finally:
            dispatcher.quit(drain=True)

    return named_worker("io-bursts", run)


class DemoEvents:
    """The demo's event lines, from the components' events (`greenworks.events`), not polling.

    A zope.event subscriber: TaskManager restarts and give-ups are printed as
    they happen; the Dispatcher's scaling steps (it doubles, 1 -> 2 -> 4 ...)
    are summed into one line per move, printed once no step came for
    `SCALE_QUIET` seconds.
    """

    def __init__(
        self, console: Console, clock: ClockLike, dispatcher: Dispatcher, manager: TaskManager
    ) -> None:
        self.console = console
        self.clock = clock
        self.dispatcher = dispatcher
        self.manager = manager
        self._move: list[Any] | None = (
            None  # [before, after, (busy, buffered)] of the scaling move in progress
        )
        self._timer: TimerHandleLike | None = None

    def __call__(self, event: Any) -> None:
        if event.component is self.manager:
            if isinstance(event, TaskRestarted):
                self.console.event(
                    "taskmanager", "%s failed, restarted (restart %d)" % (event.task_name, event.restarts)
                )
            elif isinstance(event, TaskGaveUp):
                self.console.event(
                    "taskmanager",
                    "gave up on %s after %d restarts: %r" % (event.task_name, event.restarts, event.error),
                )
        elif event.component is self.dispatcher and isinstance(event, PoolScaled):
            stats = self.dispatcher.stats()
            figures = (stats["busy"], stats["buffered"])
            if self._move is None or (event.after > event.before) != (self._move[1] > self._move[0]):
                self._flush()
                self._move = [event.before, event.after, figures]
            else:
                self._move[1:] = [event.after, figures]
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.clock.call_later(SCALE_QUIET, self._flush)

    def _flush(self) -> None:
        move, self._move = self._move, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if move is None or move[0] == move[1]:
            return
        # The figures as they were at the last step, not as they are now.
        busy, buffered = move[2]
        self.console.event(
            "dispatcher",
            "scaled %s %d -> %d workers (busy %d, buffered %d)"
            % ("up" if move[1] > move[0] else "down", move[0], move[1], busy, buffered),
        )

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


# -- TaskManager: progress and a crash loop -----------------------------------


@implementer(ITaskWithProgress)
class ProgressTask:
    """A managed task that works through *steps* and reports its progress."""

    def __init__(self, name: str, seconds: float, console: Console, steps: int = 40) -> None:
        self._name = name
        self.step_seconds = seconds / steps
        self.steps = steps
        self.done = 0
        self.console = console

    def name(self) -> str:
        return self._name

    def execute(self, ctx: Context) -> None:
        while self.done < self.steps:
            if not ctx.sleep(self.step_seconds):
                return
            self.done += 1
        self.console.event("taskmanager", "%s finished (100%%)" % self._name)

    def progress(self) -> float:
        return 100.0 * self.done / self.steps

    def description(self) -> str:
        return "%d/%d files" % (self.done, self.steps)


@implementer(IRestartableTask, ITaskWithProgress)
class CrashLoop:
    """A managed task that always fails shortly after starting, and asks to be restarted."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.runs = 0

    def name(self) -> str:
        return self._name

    def execute(self, ctx: Context) -> None:
        self.runs += 1
        ctx.sleep(0.1)
        raise ConnectionError("upstream refused run %d" % self.runs)

    def restart(self, ctx: Context, error: BaseException) -> bool:
        return True

    def progress(self) -> float:
        return 0.0

    def description(self) -> str:
        return "syncing (run %d)" % self.runs


def taskmanager_worker(manager: TaskManager, seconds: float, console: Console) -> NamedWorker:
    """Queue the tasks; their restarts and the give-up arrive as events."""
    tasks: list[Any] = [
        ProgressTask("copy-photos", 0.75 * seconds, console),
        ProgressTask("index-docs", 0.45 * seconds, console),
        CrashLoop("flaky-sync"),
    ]

    def run(ctx: Context) -> None:
        # Restarts and the give-up are reported by DemoEvents as they happen.
        for task in tasks:
            manager.go(task)
        try:
            ctx.wait()
        finally:
            manager.stop(timeout=2.0)

    return named_worker("supervised-tasks", run)


# -- JobRunner: one-second ticks with dedupe ----------------------------------


def jobs_worker(runner: JobRunner, console: Console, shutdown: Event) -> NamedWorker:
    """Consume the JobRunner's results (one line per tick) until the context is done."""

    def report(result: Result) -> None:
        parts: list[str] = []
        for item in sorted(result.items, key=lambda i: i.id):
            if isinstance(item.error, SkippedDuplicateError):
                parts.append("%s skipped (still running: dedupe)" % item.id)
            elif item.error is not None:
                parts.append("%s failed (%s)" % (item.id, item.error))
            else:
                parts.append("%s ran" % item.id)
        # Results arrive as ticks finish: a tick whose slow job ran long
        # reports after the next one, so the line says which tick it closes.
        when = result.at.strftime("%H:%M:%S")
        console.event("jobs", "tick %s done: %s" % (when, ", ".join(parts) or "nothing due"))

    def consume() -> None:
        for result in runner.results:
            report(result)

    def run(ctx: Context) -> None:
        consumer = _greenlets.spawn("greenworks.demo[jobs-results]", consume)
        try:
            ctx.wait()
        finally:
            shutdown.set()
            runner.stop_and_wait()
            consumer.join()

    return named_worker("ticks", run)


def make_jobs(clock: ClockLike, shutdown: Event) -> list[Any]:
    beats: list[int] = []

    def heartbeat() -> int:
        beats.append(1)
        return len(beats)

    def slow_report() -> str:
        # Returns early when the demo shuts down, so stopping never waits for it.
        clock.wait(shutdown, SLOW_REPORT_SECONDS)
        return "report"

    return [job("heartbeat", heartbeat), job("slow-report", slow_report)]


# -- the status display -------------------------------------------------------


def display_worker(
    console: Console, components: tuple[Any, ...], board: HealthBoard, seconds: float, url: str
) -> NamedWorker:
    runner, dispatcher, manager, jobrunner = components
    interval = 0.25 if console.tty else 1.0

    def rows() -> tuple[list[str], str]:
        endpoints = ", ".join(
            "%s %s (%d/%d ok)" % (name, "up" if e["healthy"] else "DOWN", e["ok"], e["ok"] + e["failed"])
            for name, e in sorted(board.checks.items())
            if name in {t.name for t in runner.tasks()}
        )
        d = dispatcher.stats()
        workers = d.get("workers", dispatcher.worker_count)
        pool = "workers %2d %s busy %2d buffered %2d executed %4d ups %d downs %d" % (
            workers,
            bar(workers / max(1, dispatcher_max(dispatcher)), 16),
            d.get("busy", 0),
            d.get("buffered", 0),
            d.get("executed", 0),
            d.get("scale_ups", 0),
            d.get("scale_downs", 0),
        )
        tasks = manager.task_status()
        progress = [
            "%s %s %3.0f%%" % (name, bar(t.progress / 100.0, 10), t.progress)
            if t.progress
            else "%s restarts %d" % (name, t.restarts)
            for name, t in sorted(tasks.items())
        ]
        progress += ["%s GAVE UP" % name for name in sorted(manager.failed_tasks())]
        j = jobrunner.stats()
        ticks = "tick every %gs  in flight %d  dedupe skips %d  missed ticks %d" % (
            jobrunner.tick,
            j["in_flight_jobs"],
            j["dedupe_skips_total"],
            j["missed_ticks_total"],
        )
        return [
            "greenworks demo  %5.1fs of %gs   status page %s" % (console.elapsed(), seconds, url),
            "  runner       %s" % (endpoints or "-"),
            "  dispatcher   %s" % pool,
            "  taskmanager  %s" % ("  ".join(progress) or "-"),
            "  jobs         %s" % ticks,
        ], "runner [%s] | dispatcher %d workers %d busy %d executed | tasks [%s] | jobs skips %d" % (
            endpoints,
            workers,
            d.get("busy", 0),
            d.get("executed", 0),
            ", ".join(progress),
            j["dedupe_skips_total"],
        )

    def run(ctx: Context) -> None:
        beat = 0
        while True:
            beat += 1
            if not ctx.sleep(max(0.0, beat * interval - console.elapsed())):
                # The last picture, unless one was drawn a moment ago (piped
                # output keeps to one line per second).
                if console.tty or console.elapsed() - (beat - 1) * interval > interval / 2:
                    console.show(*rows())
                return
            console.show(*rows())

    return named_worker("display", run)


def dispatcher_max(dispatcher: Dispatcher) -> int:
    return getattr(dispatcher, "max_workers", 16)


# -- main ---------------------------------------------------------------------


def main(args: argparse.Namespace, out: IO[str] = sys.stdout) -> int:
    """Run the demo for ``args.seconds``, serving status on ``args.status_port``; return the exit code."""
    seconds = float(args.seconds)
    if not 0 < seconds < math.inf:
        sys.stderr.write("greenworks demo: --seconds must be a number > 0, got %r\n" % (args.seconds,))
        return 2
    # Bind first, so a busy port is reported before anything starts.
    try:
        listener = gevent.socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", args.status_port))
        listener.listen(64)
    except (OSError, OverflowError) as error:
        sys.stderr.write(
            "greenworks demo: cannot serve the status page on 127.0.0.1:%s: %s\n" % (args.status_port, error)
        )
        return 2
    clock = get_clock()
    console = Console(out, clock)
    # The demo is an application: it decides where greenworks' log lines go.
    log = logging.getLogger("greenworks")
    log_handler = ConsoleLogHandler(console)
    log.addHandler(log_handler)
    log.propagate = False
    try:
        return _run(listener, console, clock, seconds)
    finally:
        console.close()
        log.removeHandler(log_handler)
        log.propagate = True


def _run(listener: Any, console: Console, clock: ClockLike, seconds: float) -> int:
    shutdown = Event()
    board = HealthBoard(console)
    work_server = WorkServer(clock)

    runner = Runner(board.check_worker, stop_timeout=2.0, name="health-checks")
    dispatcher = Dispatcher(
        16, 1, 16, task_timeout=5.0, wait_between_scale_downs=SCALE_DOWN_WAIT, name="io-bursts"
    )
    manager = TaskManager(
        1, 4, 1.0, restart_backoff=StaticBackoff(0.2), max_restarts=3, restart_period=5.0, name="tasks"
    )
    jobrunner = JobRunner(
        limit=4,
        dedupe=True,
        tick=1.0,
        name="jobs",
        on_skip=lambda job_id: console.event("jobs", "%s is still running: this tick's run skipped" % job_id),
    )
    jobrunner.set_jobs(make_jobs(clock, shutdown))
    components = (runner, dispatcher, manager, jobrunner)

    root = with_cancel(None)
    received: list[str] = []

    def on_output_closed() -> None:
        # Piped into `head`, say: nobody is reading any more, so stop quietly.
        if not received:
            received.append("closed output")
            root.cancel()

    # Set before the first line is written: the reader may be gone by the second.
    console.on_broken = on_output_closed
    lines = DemoEvents(console, clock, dispatcher, manager)
    zope.event.subscribers.append(lines)

    status_server = WSGIServer(listener, status.wsgi_app(*components), log=None, error_log=None)
    status_server.start()
    url = "http://127.0.0.1:%d/" % status_server.server_port
    console.say("status page %s (JSON at %sstatus.json)" % (url, url))
    console.say("running for %gs; Ctrl-C or SIGTERM stops it early" % seconds)

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if received:
            console.say("second %s: exiting at once" % name)
            console.close()
            os._exit(1)
        received.append(name)
        console.say("received %s: shutting down" % name)
        root.cancel()

    handlers = [gevent.signal_handler(s, on_signal, s) for s in (signal.SIGINT, signal.SIGTERM)]
    code = 0
    try:
        run_all_workers(
            with_timeout(root, seconds),
            runner_worker(runner, board, seconds, console),
            dispatcher_worker(dispatcher, work_server, console),
            taskmanager_worker(manager, seconds, console),
            jobs_worker(jobrunner, console, shutdown),
            display_worker(console, components, board, seconds, url),
        )
    except Exception as group:  # an ExceptionGroup of every worker's error
        for error in getattr(group, "exceptions", [group]):
            console.say("worker failed: %r" % (error,))
        code = 1
    finally:
        for handler in handlers:
            handler.cancel()
        shutdown.set()
        runner.stop()
        dispatcher.quit(drain=False)
        manager.stop(timeout=2.0)
        jobrunner.stop_and_wait()
        status_server.stop(timeout=1)
        work_server.stop()
        zope.event.subscribers.remove(lines)
        lines.close()
    left = [g.name for g in _greenlets.alive()]
    reason = received[0] if received else "end of --seconds"
    console.say(
        "stopped by %s after %.1fs: clean shutdown, %d greenworks greenlets left%s"
        % (reason, console.elapsed(), len(left), (" (%s)" % ", ".join(left)) if left else "")
    )
    return code if not left else 1
