"""greenworks.status: snapshots as JSON over real HTTP, and a page that renders in Chromium."""

import datetime
import enum
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager

import gevent
import pytest
from _gunicorn_worker import gevent_worker_unavailable
from gevent.event import Event
from gevent.pywsgi import WSGIServer
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from greenworks import status
from greenworks.dispatcher import Dispatcher
from greenworks.exceptions import InvalidArgument
from greenworks.interfaces import IStatusSource
from greenworks.jobs import JobRunner, job
from greenworks.runner import Runner
from greenworks.taskmanager import TaskManager
from greenworks.testing import FakeClock

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_TIMEOUT = 60


class Color(enum.Enum):
    GREEN = "green"


@implementer(IStatusSource)
class FakePool:
    """A component whose snapshot has numbers, a state and a table of rows."""

    def __init__(self, name, workers=3):
        self.name = name
        self.workers = workers

    def snapshot(self):
        return {
            "component": "dispatcher",
            "name": self.name,
            "status": "running",
            "workers": self.workers,
            "busy": 2,
            "scale_ups": 7,
            "tasks": [
                {"name": "resize-<img>", "state": "running", "progress": 42.5},
                {"name": "thumbs", "state": "restarted", "progress": 0},
            ],
        }


class Broken:
    name = "flaky"

    def snapshot(self):
        raise RuntimeError("disk on fire")


class Odd:
    """Returns values JSON cannot hold as they are."""

    def snapshot(self):
        return {
            "component": "odd",
            "at": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
            "color": Color.GREEN,
            "ids": {"b", "a"},
            "ratio": float("nan"),
            "error": ValueError("bad"),
            "obj": object,
        }


class NoSnapshot:
    pass


class HalfDone:
    """A managed task that reports 50% and runs until released or cancelled."""

    def __init__(self, name, release):
        self._name = name
        self.release = release

    def name(self):
        return self._name

    def execute(self, ctx):
        gevent.wait([self.release, ctx.done], count=1)

    def progress(self):
        return 50.0

    def description(self):
        return "half way"


@contextmanager
def real_components(clock):
    """A running Runner, Dispatcher, TaskManager and JobRunner on *clock*, stopped afterwards."""
    release = Event()
    runner = Runner(lambda task: lambda ctx: ctx.wait(), name="checks", clock=clock)
    dispatcher = Dispatcher(8, 1, 4, name="pool", clock=clock)
    manager = TaskManager(1, 2, 0, name="tasks", clock=clock)
    jobs = JobRunner(tick=60, dedupe=True, name="ticks", clock=clock)
    try:
        runner.apply_tasks(["alpha", "beta"])
        dispatcher.run()
        assert dispatcher.submit(lambda: 42).get(timeout=5) == 42
        assert manager.go(HalfDone("copy", release)).wait(timeout=5)
        jobs.set_jobs([job("beat", lambda: "ok")])
        yield runner, dispatcher, manager, jobs
    finally:
        release.set()
        runner.stop()
        dispatcher.quit()
        manager.stop(timeout=5)
        jobs.stop_and_wait()


@contextmanager
def serving(app):
    """Serve *app* on 127.0.0.1 on a free port; yield its base URL."""
    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_port
    finally:
        server.stop(timeout=5)


def fetch(url, method="GET"):
    """Return (status, headers, body) of a real HTTP request; errors are answers too."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def chromium(*args):
    """Run headless Chromium with *args* (the hub keeps serving: subprocess is monkey-patched)."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--user-data-dir=%s" % profile,
            *args,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT)


class TestInterfaces:
    def test_fake_component_provides_status_source(self):
        """The test's fake component satisfies IStatusSource, as real components must."""
        assert verifyClass(IStatusSource, FakePool)
        assert verifyObject(IStatusSource, FakePool("io"))

    def test_real_components_provide_status_source(self, clock):
        """Runner, Dispatcher, TaskManager and JobRunner each have the snapshot() the page needs."""
        with real_components(clock) as components:
            for component in components:
                assert verifyObject(IStatusSource, component, tentative=True)


class TestSnapshot:
    def test_describes_the_process_and_each_component_in_order(self):
        """snapshot() carries version, time from the clock, host, pid and the components in order."""
        clock = FakeClock()
        data = status.snapshot(FakePool("a"), FakePool("b", workers=9), clock=clock)
        assert data["greenworks"] == status.__version__
        assert data["generated_at"] == "2026-01-01T00:00:00+00:00"
        assert data["pid"] == os.getpid()
        assert isinstance(data["host"], str) and data["host"]
        assert [(c["name"], c["workers"]) for c in data["components"]] == [("a", 3), ("b", 9)]
        assert json.loads(json.dumps(data)) == data

    def test_generated_at_follows_the_clock(self):
        """generated_at moves when the injected clock moves."""
        clock = FakeClock()
        clock.advance(90)
        assert status.snapshot(clock=clock)["generated_at"] == "2026-01-01T00:01:30+00:00"

    def test_component_without_snapshot_is_refused_naming_it(self):
        """A component lacking snapshot() raises InvalidArgument naming its position and value."""
        with pytest.raises(InvalidArgument, match=r"components\[1\].*NoSnapshot"):
            status.snapshot(FakePool("a"), NoSnapshot())

    def test_failing_component_is_an_error_entry_not_a_failure(self, caplog):
        """A snapshot() that raises becomes an error entry; the other components are still reported."""
        data = status.snapshot(Broken(), FakePool("a"))
        broken, pool = data["components"]
        assert broken == {"component": "broken", "name": "flaky", "error": "RuntimeError: disk on fire"}
        assert pool["name"] == "a"
        assert [r.levelname for r in caplog.records if "snapshot() of" in r.getMessage()] == ["ERROR"]

    def test_non_dict_snapshot_is_an_error_entry(self):
        """A snapshot() returning something other than a dict is reported as an error."""

        class Listy:
            def snapshot(self):
                return [1, 2]

        (entry,) = status.snapshot(Listy())["components"]
        assert entry["error"] == "TypeError: snapshot() returned list, not a dict"

    def test_values_json_cannot_hold_are_converted(self):
        """Datetimes, enums, sets, NaN, exceptions and objects become JSON types, not a crash."""
        (entry,) = status.snapshot(Odd())["components"]
        assert entry == {
            "component": "odd",
            "at": "2026-01-01T00:00:00+00:00",
            "color": "green",
            "ids": ["a", "b"],
            "ratio": "nan",
            "error": "ValueError: bad",
            "obj": "<class 'object'>",
        }
        json.dumps(entry, allow_nan=False)

    def test_component_key_defaults_to_the_class_name(self):
        """A snapshot lacking "component" is labelled with its class name."""

        class Thing:
            def snapshot(self):
                return {"n": 1}

        assert status.snapshot(Thing())["components"] == [{"n": 1, "component": "thing"}]


def call(app, path, method="GET", script_name=""):
    """Call a WSGI *app* directly; return (status, headers dict, body bytes)."""
    seen = {}

    def start_response(status_line, headers):
        seen["status"], seen["headers"] = status_line, dict(headers)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": script_name}
    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


class TestWsgiApp:
    def test_bad_arguments_are_refused_at_construction(self):
        """wsgi_app refuses components without snapshot() and a non-positive refresh."""
        with pytest.raises(InvalidArgument, match=r"components\[0\]"):
            status.wsgi_app(NoSnapshot())
        with pytest.raises(InvalidArgument, match=r"refresh.*0"):
            status.wsgi_app(FakePool("a"), refresh=0)

    def test_status_json_over_real_http(self):
        """GET /status.json over HTTP returns the snapshot as uncached application/json."""
        with serving(status.wsgi_app(FakePool("io"), Broken())) as url:
            code, headers, body = fetch(url + "/status.json")
        assert code == 200
        assert headers["Content-Type"] == "application/json"
        assert "no-store" in headers["Cache-Control"]
        data = json.loads(body)
        assert set(data) == {"greenworks", "generated_at", "host", "pid", "components", "events"}
        assert data["pid"] == os.getpid()
        pool, broken = data["components"]
        assert (pool["component"], pool["name"], pool["workers"], pool["scale_ups"]) == (
            "dispatcher",
            "io",
            3,
            7,
        )
        assert broken["error"] == "RuntimeError: disk on fire"

    def test_status_json_of_real_components_over_real_http(self, clock):
        """/status.json of a running component set reports each component's kind, name and numbers."""
        with real_components(clock) as components, serving(status.wsgi_app(*components)) as url:
            code, headers, body = fetch(url + "/status.json")
        assert code == 200 and headers["Content-Type"] == "application/json"
        runner, dispatcher, manager, jobs = json.loads(body)["components"]
        assert [(c["component"], c["name"]) for c in (runner, dispatcher, manager, jobs)] == [
            ("runner", "checks"),
            ("dispatcher", "pool"),
            ("taskmanager", "tasks"),
            ("jobs", "ticks"),
        ]
        assert [(t["task"], t["state"]) for t in runner["tasks"]] == [
            ("'alpha'", "running"),
            ("'beta'", "running"),
        ]
        assert (
            dispatcher["status"] == "RUNNING" and dispatcher["executed"] == 1 and dispatcher["workers"] >= 1
        )
        (task,) = manager["tasks"]
        assert (task["name"], task["status"], task["progress"], task["description"]) == (
            "copy",
            "running",
            50.0,
            "half way",
        )
        assert (jobs["tick"], [j["id"] for j in jobs["jobs"]], jobs["next_tick"]) == (
            60.0,
            ["beat"],
            "2026-01-01T00:01:00+00:00",
        )

    def test_each_request_takes_a_fresh_snapshot(self):
        """The JSON reflects the component's state at the time of each request."""
        pool = FakePool("io", workers=1)
        with serving(status.wsgi_app(pool)) as url:
            first = json.loads(fetch(url + "/status.json")[2])
            pool.workers = 5
            second = json.loads(fetch(url + "/status.json")[2])
        assert (first["components"][0]["workers"], second["components"][0]["workers"]) == (1, 5)

    def test_unknown_path_is_404_and_other_methods_405(self):
        """Other paths answer 404; methods other than GET and HEAD answer 405 with Allow."""
        with serving(status.wsgi_app(FakePool("io"))) as url:
            missing = fetch(url + "/admin")
            post = fetch(url + "/status.json", method="POST")
            head = fetch(url + "/status.json", method="HEAD")
        assert missing[0] == 404
        assert post[0] == 405 and post[1]["Allow"] == "GET, HEAD"
        assert head[0] == 200 and head[2] == b"" and head[1]["Content-Type"] == "application/json"

    def test_html_page_refreshes_itself_and_escapes_text(self):
        """/ is an uncached HTML page with a meta refresh, names escaped and the state as a badge."""
        with serving(status.wsgi_app(FakePool("<b>io</b>"), refresh=3)) as url:
            code, headers, body = fetch(url + "/")
        page = body.decode("utf-8")
        assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert "no-store" in headers["Cache-Control"]
        assert '<meta http-equiv="refresh" content="3">' in page
        assert "&lt;b&gt;io&lt;/b&gt;" in page and "<b>io</b>" not in page
        # The component's state is a badge in its title, not a row of its table.
        assert '&lt;b&gt;io&lt;/b&gt; <span class="badge ok">running</span></h2>' in page
        assert "<th>status</th>" not in page
        assert "resize-&lt;img&gt;" in page

    def test_long_tables_are_cut_on_the_page_but_not_in_the_json(self):
        """The page shows at most MAX_ROWS rows per table and says how many more; the JSON has them all."""

        class Big:
            def snapshot(self):
                return {"component": "runner", "tasks": [{"task": "t%03d" % i} for i in range(60)]}

        app = status.wsgi_app(Big())
        page = call(app, "/")[2].decode("utf-8")
        assert status.MAX_ROWS == 50
        assert "t049" in page and "t050" not in page
        assert "... and 10 more (see status.json)" in page
        assert len(json.loads(call(app, "/status.json")[2])["components"][0]["tasks"]) == 60

    def test_mounted_under_a_prefix_links_its_json(self):
        """Mounted at a prefix (SCRIPT_NAME), the page links the JSON under that prefix."""
        app = status.wsgi_app(FakePool("io"))
        code, _headers, body = call(app, "/", script_name="/ops/status")
        assert code == "200 OK"
        assert b'href="/ops/status/status.json"' in body
        assert call(app, "/status.json", script_name="/ops/status")[0] == "200 OK"


_NO_GUNICORN = gevent_worker_unavailable()


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.skipif(_NO_GUNICORN is not None, reason=str(_NO_GUNICORN))
class TestUnderGunicorn:
    def test_served_by_gunicorn_gevent_worker(self, tmp_path):
        """`gunicorn -k gevent 'greenworks.status:wsgi_app()'` serves JSON and page from its worker."""
        command = [
            os.path.join(os.path.dirname(sys.executable), "gunicorn"),
            "-k",
            "gevent",
            "-w",
            "1",
            "-b",
            "127.0.0.1:0",
            "greenworks.status:wsgi_app(refresh=5)",
        ]
        # HOME keeps newer gunicorns' control socket out of the real home directory.
        env = dict(os.environ, HOME=str(tmp_path))
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path), env=env)
        try:
            url = None
            while url is None:
                line = proc.stderr.readline()
                assert line, "gunicorn exited before listening"
                found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", line)
                url = found and found.group(1)
            code, headers, body = fetch(url + "/status.json")
            page = fetch(url + "/")
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        data = json.loads(body)
        assert code == 200 and headers["Content-Type"] == "application/json"
        assert data["components"] == [] and data["pid"] != proc.pid  # answered by the worker, not the arbiter
        assert page[0] == 200 and b'<meta http-equiv="refresh" content="5">' in page[2]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
@pytest.mark.timeout(CHROMIUM_TIMEOUT + 30)
class TestPageInChromium:
    def test_rendered_dom_shows_components_and_numbers(self):
        """Headless Chromium renders / with a card per component, its numbers, rows and errors."""
        with serving(status.wsgi_app(FakePool("io-pool", workers=12), Broken())) as url:
            proc = chromium("--dump-dom", url + "/")
        assert proc.returncode == 0, proc.stderr
        dom = proc.stdout
        assert '<section data-component="dispatcher">' in dom
        assert "io-pool" in dom and "scale_ups" in dom and ">12<" in dom
        assert "resize-&lt;img&gt;" in dom and "42%" in dom
        assert "snapshot failed: RuntimeError: disk on fire" in dom

    def test_rendered_dom_of_real_components(self, clock):
        """The page of a running component set shows each component's card, name and key numbers."""
        with real_components(clock) as components, serving(status.wsgi_app(*components)) as url:
            proc = chromium("--dump-dom", url + "/")
        assert proc.returncode == 0, proc.stderr
        dom = proc.stdout
        for kind in ("runner", "dispatcher", "taskmanager", "jobs"):
            assert '<section data-component="%s">' % kind in dom
        for name in ("checks", "pool", "tasks", "ticks", "copy", "half way", "beat", "'alpha'"):
            assert name in dom
        assert "50%" in dom and "executed" in dom

    def test_screenshot_is_written(self, tmp_path):
        """Chromium can take a screenshot of the page (a PNG file), for people to look at."""
        shot = tmp_path / "status.png"
        with serving(status.wsgi_app(FakePool("io-pool"), Broken())) as url:
            proc = chromium("--screenshot=%s" % shot, "--window-size=1100,700", url + "/")
        assert proc.returncode == 0, proc.stderr
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- made useful for operations (issue 16) -------------------------------------

NOON = "2026-03-01T12:00:00+00:00"


class FakeJobs:
    """A JobRunner snapshot with the per-job rows: one job that failed, one paused."""

    name = "ops"

    def snapshot(self):
        return {
            "component": "jobs",
            "name": "ops",
            "tick": 60.0,
            "next_tick": "2026-03-01T12:01:00+00:00",
            "jobs": [
                {
                    "id": "report",
                    "schedule": "every 5 min",
                    "next_run": "2026-03-01T12:05:00+00:00",
                    "last_run": {
                        "at": NOON,
                        "duration": 0.25,
                        "outcome": "error",
                        "error": "ValueError: <no>",
                    },
                    "paused": False,
                    "running": False,
                },
                {
                    "id": "cleanup",
                    "schedule": "at 03:00",
                    "next_run": None,
                    "last_run": None,
                    "paused": True,
                    "running": False,
                },
            ],
        }


@pytest.fixture(autouse=True)
def _no_recorder_left():
    """Each test's wsgi_app records events process-wide; stop it afterwards."""
    yield
    status.stop_recording()


class TestOperationsPage:
    def test_jobs_show_last_run_next_due_and_paused(self):
        """Per job: last run time with date and zone, duration with unit, outcome, error, next due, paused."""
        page = call(status.wsgi_app(FakeJobs()), "/")[2].decode("utf-8")
        assert "<th>next due</th>" in page and "<th>last error</th>" in page
        assert ">2026-03-01 12:00:00 UTC</time>" in page and ">2026-03-01 12:05:00 UTC</time>" in page
        assert '250<span class="unit">ms</span>' in page
        assert '<span class="badge bad">error</span>' in page and "ValueError: &lt;no&gt;" in page
        # The paused job: no run yet, no next run, paused.
        assert page.count('<span class="badge ok">yes</span>') + page.count(">yes<") >= 1
        assert '60<span class="unit">s</span>' in page  # the tick, with its unit

    def test_plain_id_list_of_jobs_still_renders(self):
        """A JobRunner snapshot whose ``jobs`` is a list of ids (no rows) still renders them."""

        class OldJobs:
            def snapshot(self):
                return {"component": "jobs", "name": "old", "jobs": ["a", "b"]}

        page = call(status.wsgi_app(OldJobs()), "/")[2].decode("utf-8")
        assert "<h3>jobs</h3><p>a, b</p>" in page

    def test_figures_carry_units_and_dates_their_zone(self):
        """Counts say what they count, durations their unit, timestamps date and zone (offsets kept)."""

        class Odd:
            def snapshot(self):
                return {
                    "component": "dispatcher",
                    "workers": 12,
                    "buffered": 3,
                    "task_timeout": 150.0,
                    "at": "2026-03-01T14:00:00+02:00",
                }

        page = call(status.wsgi_app(Odd()), "/")[2].decode("utf-8")
        assert '12<span class="unit">workers</span>' in page and '3<span class="unit">tasks</span>' in page
        assert '2.5<span class="unit">min</span>' in page
        assert ">2026-03-01 14:00:00 +02:00</time>" in page

    def test_running_hub_watch_shows_its_top_blockers(self):
        """While a hub watch runs, the page has its card with the culprit, its component and stack."""
        from gevent import monkey

        from greenworks import monitor

        app = status.wsgi_app(FakePool("io"))
        with monitor.watch_hub(0.05) as watch:
            g = gevent.spawn(monkey.get_original("time", "sleep"), 0.15)
            g.name = "the-culprit"
            g.join()
            while not watch.counts():
                gevent.sleep(0.01)  # the report reaches the hub at the loop's next turn
            page = call(app, "/")[2].decode("utf-8")
            data = json.loads(call(app, "/status.json")[2])
        assert '<section data-component="hubwatch">' in page and "<h3>top blockers</h3>" in page
        assert "the-culprit" in page and ">foreign</span>" in page
        assert [c["component"] for c in data["components"]] == ["dispatcher", "hubwatch"]
        assert data["components"][1]["top_blockers"][0]["greenlet_name"] == "the-culprit"
        assert "hubwatch" not in call(app, "/")[2].decode("utf-8")

    def test_recent_events_are_recorded_by_a_subscriber_not_polled(self):
        """The page lists the events components emitted, newest first; events=False subscribes nothing."""
        import zope.event

        from greenworks import monitor

        before = list(zope.event.subscribers)
        quiet = status.wsgi_app(FakePool("io"), events=False)
        assert zope.event.subscribers == before and status.recording() is None
        assert "events" not in json.loads(call(quiet, "/status.json")[2])
        app = status.wsgi_app(FakePool("io"))
        assert status.recording() in zope.event.subscribers
        with monitor.HubWatch(0.5, name="probe"):
            pass
        entries = json.loads(call(app, "/status.json")[2])["events"]
        assert [(e["event"], e["name"]) for e in entries[:2]] == [
            ("ComponentStopped", "probe"),
            ("ComponentStarted", "probe"),
        ]
        assert entries[0]["detail"] == "clean=True" and entries[0]["at"].endswith("+00:00")
        page = call(app, "/")[2].decode("utf-8")
        assert '<section data-component="events">' in page and "ComponentStopped" in page
        assert status.wsgi_app(events=True) and status.recording() is status.record_events()
        with pytest.raises(InvalidArgument, match="events"):
            status.wsgi_app(events="yes")


def _png_pixels(data):
    """The decompressed scanlines of a PNG (filter bytes included): enough to tell blank from drawn."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return size, zlib.decompress(idat)


_PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id=f src="/" style="width:1200px;height:3000px;border:0"></iframe>
<script>
document.getElementById('f').onload = function () {
  var d = this.contentDocument, main = d.querySelector('main'), cs = getComputedStyle(main);
  var inner = main.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  var gap = parseFloat(cs.columnGap), rows = {}, out = [];
  d.querySelectorAll('main > .cell').forEach(function (c) {
    var r = c.getBoundingClientRect(), s = c.firstChild.getBoundingClientRect();
    var k = Math.round(r.top);
    (rows[k] = rows[k] || []).push([r.width, Math.round(r.height), Math.round(r.height - s.height)]);
  });
  for (var k in rows) {
    var rs = rows[k], w = gap * (rs.length - 1);
    rs.forEach(function (r) { w += r[0]; });
    out.push([rs.length, Math.round(inner - w), Math.min.apply(null, rs.map(function (r) { return r[1]; })),
              Math.max.apply(null, rs.map(function (r) { return r[1]; })),
              Math.max.apply(null, rs.map(function (r) { return r[2]; }))].join(','));
  }
  document.body.insertAdjacentHTML('beforeend', '<pre id=result>ROWS ' + out.join(';') + ' END</pre>');
};
</script></body></html>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
@pytest.mark.timeout(CHROMIUM_TIMEOUT + 30)
class TestOperationsPageInChromium:
    def _app(self):
        page = status.wsgi_app(FakePool("io-pool", 12), FakePool("cpu"), Broken(), FakeJobs(), refresh=600)
        probe = _PROBE.encode("utf-8")

        def app(environ, start_response):
            if environ.get("PATH_INFO") == "/probe":
                start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(probe)))])
                return [probe]
            return page(environ, start_response)

        return app

    def test_no_layout_gaps_at_1200_px(self):
        """At 1200 px every row of cards fills the width, and the cards of a row are of one height."""
        with serving(self._app()) as url:
            proc = chromium("--window-size=1250,3100", "--dump-dom", url + "/probe")
        assert proc.returncode == 0, proc.stderr
        found = re.search(r"ROWS ([-\d,;]+) END", proc.stdout)
        assert found, proc.stdout[-2000:]
        rows = [tuple(map(int, row.split(","))) for row in found.group(1).split(";")]
        assert len(rows) >= 3 and sum(r[0] for r in rows) == 5  # 4 components and the events card
        for _count, left_over, low, high, unfilled in rows:
            assert abs(left_over) <= 1, rows  # no hole at the end of a row
            assert low == high and unfilled == 0, rows  # no hole under a shorter card

    def test_screenshot_is_not_blank(self, tmp_path):
        """A 1200 px screenshot of the page has drawn content: many distinct pixel values, not one colour."""
        shot = tmp_path / "ops.png"
        with serving(self._app()) as url:
            proc = chromium("--screenshot=%s" % shot, "--window-size=1200,900", url + "/")
        assert proc.returncode == 0, proc.stderr
        (width, height), pixels = _png_pixels(shot.read_bytes())
        assert (width, height) == (1200, 900)
        assert len(set(pixels)) > 50
        assert max(pixels.count(b) for b in set(pixels[:4096])) < 0.98 * len(pixels)
