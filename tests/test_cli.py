"""The ``greenworks`` command line: real ``python -m greenworks`` subprocesses, a real status server."""

import os
import signal
import subprocess
import sys
import textwrap
from contextlib import contextmanager

import gevent
import pytest
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from greenworks import _status_command, cli, status
from greenworks._version import __version__
from greenworks.dispatcher import Dispatcher
from greenworks.taskmanager import TaskManager

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Interpreter start-up and imports on a busy machine; never a synchronisation sleep.
PROCESS_TIMEOUT = 30
# What would only ever appear in help text that was written as reST.
REST_MARKUP = ("``", ":mod:", ":func:", ":class:", ":param", ".. ")


def env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT_DIR, os.environ.get("PYTHONPATH", "")]))


def greenworks(*args, cwd=ROOT_DIR):
    """Run ``python -m greenworks *args`` to completion; return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "greenworks", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env(),
        timeout=PROCESS_TIMEOUT,
    )


@contextmanager
def serving(app):
    """Serve the WSGI *app* on 127.0.0.1 on a free port; yield its base URL."""
    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_port
    finally:
        server.stop(timeout=5)


def answer(status_line, body, content_type="text/plain"):
    """A WSGI app answering every request with *status_line* and *body*."""

    def app(environ, start_response):
        start_response(status_line, [("Content-Type", content_type)])
        return [body]

    return app


class Copy:
    """A managed task at 25% that runs until released or cancelled."""

    def __init__(self, release):
        self.release = release

    def name(self):
        return "copy-photos"

    def execute(self, ctx):
        gevent.wait([self.release, ctx.done], count=1)

    def progress(self):
        return 25.0

    def description(self):
        return "10/40 files"


@pytest.mark.slow
@pytest.mark.timeout(PROCESS_TIMEOUT * 2)
class TestHelp:
    def test_help_is_plain_text_with_examples(self):
        """``greenworks --help`` lists every command and examples, with no reST markup in it."""
        proc = greenworks("--help")
        assert proc.returncode == 0, proc.stderr
        text = proc.stdout
        for command in ("run", "status", "demo"):
            assert "\n    %s " % command in text
        assert "examples:\n  greenworks demo" in text
        assert "greenworks status http://127.0.0.1:8081" in text
        assert not [markup for markup in REST_MARKUP if markup in text], text

    @pytest.mark.parametrize("command", ["run", "status", "demo"])
    def test_each_command_help_is_plain_text(self, command):
        """Each subcommand's --help has its usage and examples, in plain text."""
        proc = greenworks(command, "--help")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("usage: greenworks %s" % command)
        assert "greenworks %s" % command in proc.stdout.split("\n", 1)[1]
        assert not [markup for markup in REST_MARKUP if markup in proc.stdout], proc.stdout

    def test_no_command_is_a_usage_error(self):
        """``greenworks`` alone exits 2 with the usage and says a command is required."""
        proc = greenworks()
        assert proc.returncode == 2
        assert proc.stderr.startswith("usage: greenworks")
        assert "required: COMMAND" in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(PROCESS_TIMEOUT * 2)
class TestVersion:
    def test_version_is_the_package_version(self):
        """``greenworks --version`` prints the one version of greenworks/_version.py."""
        proc = greenworks("--version")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "greenworks %s\n" % __version__
        import greenworks as package

        assert package.__version__ == __version__ == status.snapshot()["greenworks"]


@pytest.mark.slow
@pytest.mark.timeout(PROCESS_TIMEOUT * 3)
class TestRunHelpExample:
    def example_from_help(self):
        text = greenworks("run", "--help").stdout
        start = text.index("(save it as myapp.py):\n") + len("(save it as myapp.py):\n")
        end = text.index("\nthen run it")
        return textwrap.dedent(text[start:end]).strip("\n")

    def test_run_help_shows_the_registry_example(self):
        """``greenworks run --help`` shows the registry module, five lines plus imports, and how to run it."""
        example = self.example_from_help()
        assert example == cli.RUN_EXAMPLE
        code = [
            line
            for line in example.splitlines()
            if line.strip() and not line.startswith(("from ", "import "))
        ]
        assert len(code) == 5
        assert "greenworks run myapp:registry" in greenworks("run", "--help").stdout

    def test_the_example_runs_and_stops_on_sigterm(self, tmp_path):
        """The example copied out of the help text runs under ``greenworks run`` and stops cleanly."""
        (tmp_path / "myapp.py").write_text(self.example_from_help() + "\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "greenworks", "run", "myapp:registry"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(tmp_path),
            env=dict(env(), PYTHONUNBUFFERED="1"),
        )
        try:
            first = proc.stdout.readline()
            assert first == "alive\n", first or proc.stderr.read()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=PROCESS_TIMEOUT)
        finally:
            if proc.poll() is None:  # pragma: no cover - only on a failure above
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert "SIGTERM received, stopping workers" in err


@pytest.mark.slow
@pytest.mark.timeout(PROCESS_TIMEOUT * 3)
class TestStatusCommand:
    def test_prints_a_running_process_status_as_tables(self):
        """``greenworks status URL`` prints the process line, a row per component and the task rows."""
        release = Event()
        dispatcher = Dispatcher(8, 1, 4, name="io-pool")
        manager = TaskManager(1, 2, 0, name="tasks")
        try:
            dispatcher.run()
            assert dispatcher.submit(lambda: 42).get(timeout=10) == 42
            assert manager.go(Copy(release)).wait(timeout=10)
            with serving(status.wsgi_app(dispatcher, manager, events=False)) as url:
                proc = greenworks("status", url)
        finally:
            release.set()
            dispatcher.quit()
            manager.stop(timeout=5)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("greenworks %s on " % __version__)
        assert lines[2].split() == ["COMPONENT", "NAME", "STATE", "FIGURES"]
        pool = lines[3].split()
        assert pool[:3] == ["dispatcher", "io-pool", "running"]
        assert "executed=1" in pool and "max_workers=4" in pool
        assert lines[4].split()[:3] == ["taskmanager", "tasks", "running"]
        tasks = lines.index("taskmanager tasks: tasks")
        assert lines[tasks + 1].split()[:3] == ["NAME", "WORKER", "STATUS"]
        row = lines[tasks + 2]
        assert row.startswith("copy-photos") and "10/40 files" in row and " 25 " in row

    def test_accepts_the_status_json_address_and_a_mount_point(self):
        """The URL may be the page, the page with a slash, or status.json itself."""
        data = b'{"greenworks": "9", "host": "h", "pid": 1, "generated_at": "t", "components": []}'
        seen = []

        def app(environ, start_response):
            seen.append(environ["PATH_INFO"])
            start_response("200 OK", [("Content-Type", "application/json")])
            return [data]

        with serving(app) as url:
            procs = [
                greenworks("status", address) for address in (url, url + "/ops/", url + "/x/status.json")
            ]
        assert [proc.returncode for proc in procs] == [0, 0, 0], [proc.stderr for proc in procs]
        assert seen == ["/status.json", "/ops/status.json", "/x/status.json"]
        assert procs[0].stdout.splitlines() == [
            "greenworks 9 on h, pid 1, snapshot at t",
            "",
            "(no components)",
        ]

    def test_unreachable_url_exits_2_with_one_line(self):
        """A port nobody listens on gives exit 2 and one line naming the address."""
        with serving(answer("200 OK", b"")) as url:
            pass  # the port was free a moment ago and is closed now
        proc = greenworks("status", url)
        assert proc.returncode == 2
        assert proc.stderr.startswith("greenworks status: cannot reach %s/status.json: " % url)
        assert proc.stderr.count("\n") == 1 and proc.stdout == ""

    @pytest.mark.parametrize(
        ("app", "message"),
        [
            (answer("404 Not Found", b"not found"), "answered HTTP 404 Not Found"),
            (answer("200 OK", b"<html>hi</html>", "text/html"), "did not answer JSON"),
            (answer("200 OK", b'{"a": 1}', "application/json"), "is not a greenworks status document"),
        ],
    )
    def test_not_a_status_page_exits_2(self, app, message):
        """An HTTP error, a non-JSON answer or JSON without components: exit 2 and one line saying so."""
        with serving(app) as url:
            proc = greenworks("status", url)
        assert proc.returncode == 2
        assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr

    @pytest.mark.parametrize("url", ["127.0.0.1:8081", "ftp://127.0.0.1/", "http://"])
    def test_bad_url_exits_2_naming_it(self, url):
        """A URL without http(s) scheme or host is refused before any network call, naming it."""
        proc = greenworks("status", url)
        assert proc.returncode == 2
        assert proc.stderr == "greenworks status: bad URL %r: expected http://HOST:PORT[/PATH]\n" % url

    @pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "soon"])
    def test_bad_timeout_is_a_usage_error_naming_it(self, timeout):
        """--timeout must be a number of seconds > 0; argparse names the option and the value."""
        proc = greenworks("status", "http://127.0.0.1:1", "--timeout", timeout)
        assert proc.returncode == 2
        assert "argument --timeout: expected a number of seconds > 0, got %r" % timeout in proc.stderr


class TestFormatStatus:
    """The table layout, on documents built by hand (the subprocess tests cover the real ones)."""

    def test_error_entry_shows_its_error(self):
        """A component whose snapshot failed shows state 'error' and the error text as its figures."""
        text = _status_command.format_status(
            {"components": [{"component": "jobs", "name": "ops", "error": "RuntimeError: disk on fire"}]}
        )
        assert text.splitlines()[3].split(None, 3) == ["jobs", "ops", "error", "RuntimeError: disk on fire"]

    def test_rows_beyond_the_limit_are_counted_not_dropped_silently(self):
        """A table longer than MAX_ROWS shows the first rows and says how many more there are."""
        rows = [{"id": "job-%d" % i} for i in range(_status_command.MAX_ROWS + 3)]
        text = _status_command.format_status(
            {"components": [{"component": "jobs", "name": "j", "jobs": rows}]}
        )
        assert "job-%d" % (_status_command.MAX_ROWS - 1) in text
        assert "job-%d" % _status_command.MAX_ROWS not in text
        assert text.endswith("... and 3 more rows (see status.json)")

    def test_dict_of_rows_gets_a_key_column(self):
        """A dict of rows (a TaskManager's workers by id) is a table whose first column is the key."""
        workers = {"1": {"task": "copy", "status": "running"}}
        text = _status_command.format_status(
            {"components": [{"component": "taskmanager", "workers": workers}]}
        )
        assert text.splitlines()[-2:] == ["KEY  TASK  STATUS", "1    copy  running"]

    def test_long_cells_are_cut_with_an_ellipsis(self):
        """A cell longer than MAX_CELL is cut to MAX_CELL characters ending in '...'."""
        cell = _status_command._text("x" * 500)
        assert len(cell) == _status_command.MAX_CELL and cell.endswith("...")

    def test_bad_timeout_in_the_api_names_the_argument(self):
        """run_status(timeout=...) is checked by the library's one checker."""
        with pytest.raises(ValueError, match="timeout must be a number of seconds > 0, got 0"):
            _status_command.run_status("http://127.0.0.1:1", timeout=0)
