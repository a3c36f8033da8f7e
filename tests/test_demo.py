"""`python -m greenworks demo`: every capability shows up, and it always stops cleanly."""

import fcntl
import io
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import urllib.request

import gevent.os
import pytest
from zope.interface.verify import verifyClass, verifyObject

from greenworks import demo
from greenworks.clock import get_clock
from greenworks.interfaces import IRestartableTask, ITaskWithProgress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URL = re.compile(r"status page (http://127\.0\.0\.1:\d+/) ")


def demo_command(*args):
    return [sys.executable, "-m", "greenworks", "demo", *args]


def run_demo(seconds):
    """Run the demo piped for *seconds*; return the finished process (stdout and stderr as text)."""
    return subprocess.run(
        demo_command("--seconds", str(seconds)),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        cwd=ROOT,
    )


def events(stdout, component):
    """The texts of the event lines of *component* (``"  1.23s  runner:      text"``)."""
    pattern = re.compile(r"^\s*\d+\.\d\ds  %s:\s+(.*)$" % re.escape(component))
    return [m.group(1) for m in map(pattern.match, stdout.splitlines()) if m]


@pytest.fixture(scope="module")
def three_seconds():
    """One piped run of ``demo --seconds 3``, shared by the checks on its output."""
    return run_demo(3)


class TestInterfaces:
    def test_demo_tasks_provide_their_interfaces(self):
        """The demo's managed tasks are real ITaskWithProgress / IRestartableTask implementations."""
        console = demo.Console(io.StringIO(), get_clock())
        assert verifyClass(ITaskWithProgress, demo.ProgressTask)
        assert verifyObject(ITaskWithProgress, demo.ProgressTask("copy", 1.0, console))
        assert verifyClass(IRestartableTask, demo.CrashLoop)
        assert verifyObject(IRestartableTask, demo.CrashLoop("flaky"))
        assert verifyObject(ITaskWithProgress, demo.CrashLoop("flaky"))


@pytest.mark.slow
@pytest.mark.timeout(60)
class TestPipedRun:
    def test_exits_zero_with_a_clean_shutdown_line(self, three_seconds):
        """The run exits 0, writes nothing to stderr and ends with the clean shutdown line."""
        assert three_seconds.returncode == 0, three_seconds.stderr
        assert three_seconds.stderr == ""
        assert events(three_seconds.stdout, "demo")[-1].startswith("stopped by end of --seconds after 3.")
        assert "clean shutdown, 0 greenworks greenlets left" in three_seconds.stdout.splitlines()[-1]

    def test_prints_the_status_page_url(self, three_seconds):
        """The first line names the status page on 127.0.0.1."""
        assert URL.search(three_seconds.stdout.splitlines()[0])

    def test_runner_reconciles_a_changing_set(self, three_seconds):
        """The Runner starts two endpoints, adds one and removes one, and sees one turn unhealthy."""
        runner = events(three_seconds.stdout, "runner")
        reconciled = [line for line in runner if line.startswith("reconciled")]
        assert reconciled == [
            "reconciled +alpha +beta: 2 health-check workers",
            "reconciled +gamma: 3 health-check workers",
            "reconciled -alpha: 2 health-check workers",
        ]
        down = runner.index("beta is UNHEALTHY (HTTP 503)")
        assert "beta is healthy (HTTP 200)" in runner[down + 1 :]

    def test_dispatcher_scales_up_and_down(self, three_seconds):
        """Each burst makes the pool scale up, and it scales down between bursts."""
        lines = events(three_seconds.stdout, "dispatcher")
        moves = [line.split()[1] for line in lines if line.startswith("scaled")]
        assert sum(1 for line in lines if line.startswith("burst of 40 socket calls")) == 2
        assert moves[:2] == ["up", "down"] and "up" in moves[2:]

    def test_taskmanager_restarts_then_gives_up(self, three_seconds):
        """The crash-looping task is restarted three times, then given up on; progress tasks finish."""
        lines = events(three_seconds.stdout, "taskmanager")
        assert [line for line in lines if "flaky-sync" in line][:4] == [
            "flaky-sync failed, restarted (restart 1)",
            "flaky-sync failed, restarted (restart 2)",
            "flaky-sync failed, restarted (restart 3)",
            "gave up on flaky-sync after 3 restarts: ConnectionError('upstream refused run 4')",
        ]
        assert "index-docs finished (100%)" in lines and "copy-photos finished (100%)" in lines

    def test_jobs_tick_every_second_with_dedupe(self, three_seconds):
        """The JobRunner ticks about once a second and skips the slow job while it is in flight."""
        lines = events(three_seconds.stdout, "jobs")
        ticks = {line.split()[1] for line in lines if line.startswith("tick ")}
        assert 2 <= len(ticks) <= 4
        assert "slow-report is still running: this tick's run skipped" in lines
        assert any("slow-report skipped (still running: dedupe)" in line for line in lines)

    def test_one_status_line_per_second(self, three_seconds):
        """Piped, the demo prints one plain status line per second (no terminal control codes)."""
        status = events(three_seconds.stdout, "status")
        assert len(status) == 3
        assert all(line.startswith("runner [") and "| dispatcher" in line for line in status)
        assert "\x1b" not in three_seconds.stdout


class TestBadArguments:
    def test_non_positive_seconds_are_refused(self):
        """--seconds 0 exits 2 with a message naming the option and value, before starting anything."""
        proc = subprocess.run(
            demo_command("--seconds", "0"), capture_output=True, text=True, timeout=30, cwd=ROOT
        )
        assert proc.returncode == 2
        assert "--seconds must be a number > 0, got 0.0" in proc.stderr and proc.stdout == ""

    def test_busy_status_port_is_reported(self):
        """A --status-port already in use exits 2 with a message naming it, before starting anything."""
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            proc = subprocess.run(
                demo_command("--seconds", "1", "--status-port", str(port)),
                capture_output=True,
                text=True,
                timeout=30,
                cwd=ROOT,
            )
        assert proc.returncode == 2
        assert "cannot serve the status page on 127.0.0.1:%d" % port in proc.stderr and proc.stdout == ""


@pytest.mark.slow
@pytest.mark.timeout(60)
class TestSignals:
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_signal_stops_early_and_cleanly(self, signum):
        """A signal mid-run stops every component, exits 0 and says so; status.json answered before."""
        proc = subprocess.Popen(
            demo_command("--seconds", "60"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            first = proc.stdout.readline()
            url = URL.search(first).group(1)
            with urllib.request.urlopen(url + "status.json", timeout=10) as response:
                kinds = [c["component"] for c in json.load(response)["components"]]
            assert kinds == ["runner", "dispatcher", "taskmanager", "jobs"]
            proc.send_signal(signum)
            stdout, stderr = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        name = signal.Signals(signum).name
        assert proc.returncode == 0, stderr
        assert "demo:        received %s: shutting down" % name in stdout
        last = stdout.splitlines()[-1]
        assert re.search(
            r"stopped by %s after \d+\.\ds: clean shutdown, 0 greenworks greenlets left$" % name, last
        )

    def test_closed_output_stops_quietly(self):
        """When the reader of its output goes away (`| head`), the demo stops early, exit 0, no traceback."""
        proc = subprocess.Popen(
            demo_command("--seconds", "60"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert URL.search(proc.stdout.readline())
            proc.stdout.close()
            stderr = proc.stderr.read()
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert stderr == ""


@pytest.mark.slow
@pytest.mark.timeout(60)
class TestTerminal:
    def test_redraws_a_status_table_on_a_terminal(self):
        """On a terminal the demo redraws a five-line table in place (ANSI), cut to the terminal's width."""
        controller, terminal = pty.openpty()
        # A 70-column terminal: table rows must be cut to fit, or the in-place redraw breaks.
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 70, 0, 0))
        proc = subprocess.Popen(
            demo_command("--seconds", "1.5"), stdout=terminal, stderr=subprocess.PIPE, cwd=ROOT
        )
        os.close(terminal)
        gevent.os.make_nonblocking(controller)
        chunks = []
        try:
            while True:
                try:
                    chunk = gevent.os.nb_read(controller, 65536)
                except OSError:  # EIO: the demo closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            assert proc.wait(timeout=20) == 0
        finally:
            os.close(controller)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        screen = b"".join(chunks).decode("utf-8", "replace")
        assert screen.count("\x1b[5F\x1b[J") >= 4
        assert "greenworks demo " in screen and "  dispatcher   workers" in screen
        assert "  taskmanager  " in screen and "  jobs         tick every 1s" in screen
        assert "status:" not in screen
        assert screen.count("\x1b[?25l") == 1 and screen.endswith("\x1b[?25h")
        rows = [line.rstrip("\r") for line in screen.split("\n") if line.startswith("  dispatcher   ")]
        assert rows and max(len(row) for row in rows) == 69
