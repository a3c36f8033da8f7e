"""
Status snapshots of running components, as JSON and as a page a person reads.

Every greenworks component (`Runner`, `Dispatcher`, `TaskManager`,
`JobRunner`) has a ``snapshot()`` method returning a JSON-ready dict whose
``"component"`` key says what it is. This module gathers them:

- :func:`snapshot` collects the snapshots of any number of components into
  one dict, with the process it describes (version, host, pid, time).
- :func:`wsgi_app` serves that dict at ``/status.json``, a small
  self-refreshing HTML page at ``/`` and, when prometheus_client is
  installed, ``/metrics`` (`greenworks.metrics`). It is plain WSGI, so it
  runs under ``gevent.pywsgi``, gunicorn, or mounted beside an application::

      from gevent.pywsgi import WSGIServer
      from greenworks.status import wsgi_app

      WSGIServer(("127.0.0.1", 8081), wsgi_app(dispatcher, manager)).serve_forever()

The page shows per job its last run, next due time and paused flag (from a
JobRunner snapshot's ``jobs`` rows, when it has them), every date with its
zone and every figure with its unit, the worst hub blockers of a running
`greenworks.monitor` watch, and the latest events, recorded as they happen by
a subscriber (:func:`record_events`), not polled.

A component whose ``snapshot()`` raises shows up as an error entry naming the
exception: one broken component never breaks the page, nor the request.
Collecting a snapshot never blocks: each component's ``snapshot()`` only reads
its own state.
"""

import datetime
import enum
import html
import json
import logging
import math
import os
import re
import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from greenworks._checks import is_real
from greenworks._status_events import DEFAULT_EVENTS, EventLog, record_events, recording, stop_recording
from greenworks._version import __version__
from greenworks.clock import ClockLike, get_clock
from greenworks.exceptions import invalid_argument

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "DEFAULT_EVENTS",
    "EventLog",
    "record_events",
    "recording",
    "render_html",
    "snapshot",
    "stop_recording",
    "wsgi_app",
]

logger = logging.getLogger(__name__)

#: Seconds between two reloads of the HTML page.
DEFAULT_REFRESH = 2.0
#: Rows shown per table on the HTML page; the JSON always has every row.
MAX_ROWS = 50

_NO_CACHE = ("Cache-Control", "no-store, max-age=0")


def _check_components(components: Sequence[object]) -> None:
    for index, component in enumerate(components):
        if not callable(getattr(component, "snapshot", None)):
            raise invalid_argument(
                "components[%d]" % index, component, "a component with a snapshot() method"
            )


def _jsonable(value: object) -> Any:
    """Return *value* as plain JSON types: what a component forgot to convert is still shown."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        # JSON has no NaN or infinity; a page must still parse.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(_jsonable(key)): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(item) for item in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, BaseException):
        return "%s: %s" % (type(value).__name__, value)
    return repr(value)


def _component_snapshot(component: Any) -> dict[str, Any]:
    try:
        data: dict[str, Any] = component.snapshot()
        if not isinstance(data, dict):
            raise TypeError("snapshot() returned %s, not a dict" % type(data).__name__)
        data = _jsonable(data)
    except Exception as exc:
        logger.exception("snapshot() of %r failed", component)
        return {
            "component": type(component).__name__.lower(),
            "name": _jsonable(getattr(component, "name", None)),
            "error": "%s: %s" % (type(exc).__name__, exc),
        }
    data.setdefault("component", type(component).__name__.lower())
    return data


def snapshot(*components: Any, clock: ClockLike | None = None) -> dict[str, Any]:
    """Return one JSON-serialisable dict describing this process and *components*.

    ::

        {"greenworks": "0.2.0", "generated_at": "2026-01-01T00:00:00+00:00",
         "host": "web-1", "pid": 4242,
         "components": [{"component": "dispatcher", "name": "io", ...}, ...]}

    Components are listed in the order given. A component whose ``snapshot()``
    raises (or returns something other than a dict) is listed as
    ``{"component": ..., "name": ..., "error": "ValueError: ..."}`` and the
    error is logged; values JSON cannot hold (datetimes, enums, sets) are
    converted rather than refused.

    Does not block, unless a component's ``snapshot()`` does.

    :param components: objects with a ``snapshot() -> dict`` method.
    :param clock: the `IClock` giving ``generated_at`` (``None``: real time).
    :raises InvalidArgument: a component has no ``snapshot()`` method.
    """
    _check_components(components)
    now = get_clock(clock).now(datetime.timezone.utc)
    return {
        "greenworks": __version__,
        "generated_at": now.isoformat(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "components": [_component_snapshot(component) for component in components],
    }


# -- HTML ---------------------------------------------------------------------

# Cards sit in flex rows: each grows to fill its row and stretches to the row's
# height, so there is no hole at any width (a grid leaves empty tracks in its
# last row); cards with tables take a whole row.
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:baseline}
header h1{font-size:18px;margin:0}header span{opacity:.8}header a{color:#9cf}
main{display:flex;flex-wrap:wrap;align-items:stretch;gap:14px;padding:14px}
.cell{flex:1 1 340px;min-width:0}.cell.wide{flex-basis:100%}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:10px 14px;height:100%;
box-sizing:border-box;overflow-x:auto}
.unit{color:#667;font-size:11px;margin-left:2px}
details summary{cursor:pointer;color:#3b5ddd}
pre{font-size:11px;max-height:240px;overflow:auto;background:#f4f5f7}
section h2{font-size:15px;margin:0 0 6px}section p{margin:4px 0}
section h3{font-size:13px;margin:10px 0 4px;color:#556}
.kind{text-transform:uppercase;letter-spacing:.05em;color:#667;font-size:11px;margin-right:6px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
td,th{padding:2px 8px 2px 0;text-align:left;vertical-align:top;font-size:13px}
th{color:#667;font-weight:600}td.num{text-align:right}
.badge{display:inline-block;border-radius:9px;padding:0 8px;font-size:12px;background:#dde;color:#223}
.badge.ok{background:#cfead6;color:#124d22}.badge.warn{background:#fbe7c2;color:#6b4500}
.badge.bad{background:#f7d0d0;color:#7a1010}
.error{color:#7a1010;font-weight:600}.more{color:#667;font-style:italic}
.bar{display:inline-block;width:90px;height:9px;background:#e4e6ea;border-radius:5px;margin-right:6px}
.bar i{display:block;height:9px;border-radius:5px;background:#3b7ddd}
"""

_GOOD = {"running", "ok", "open", "idle", "waiting", "true"}
_WARN = {"draining", "stopping", "restarted", "not assigned", "pending", "starting", "exiting"}
_BAD = {"failed", "error", "crashed", "stopped", "closed", "given up", "gave up", "false", "exited"}
_STATE_KEYS = ("state", "status")


_ISO_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?([+-]\d\d:\d\d|Z)?$")

# What a figure counts, by its key: the unit shown after it.
_SECONDS = re.compile(r"(seconds|duration|lateness|timeout|interval|period|delay|_time|^tick|_age)$")
_UNITS = {
    "tasks": (
        "buffered",
        "overflowed",
        "dispatched",
        "executed",
        "failed",
        "timed_out",
        "rejected",
        "max_buffered",
        "pending",
    ),
    "workers": ("workers", "busy", "idle", "min_workers", "max_workers", "max_size"),
    "times": ("scale_ups", "scale_downs", "blocks", "count", "restarts"),
}
_UNIT_OF = {key: unit for unit, keys in _UNITS.items() for key in keys}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _badge(value: object) -> str:
    text = str(value)
    low = text.lower()
    kind = "ok" if low in _GOOD else "warn" if low in _WARN else "bad" if low in _BAD else ""
    return '<span class="badge %s">%s</span>' % (kind, _e(text))


def _scalar(key: str, value: object) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return _badge("yes" if value else "no")
    if key == "progress" and isinstance(value, (int, float)):
        width = max(0.0, min(100.0, float(value)))
        return '<span class="bar"><i style="width:%.0f%%"></i></span>%.0f%%' % (width, value)
    if isinstance(value, (int, float)) and _SECONDS.search(key):
        return _duration(value)
    if isinstance(value, float):
        return _e("%.3g" % value if abs(value) < 1e6 else "%.0f" % value) + _unit(key)
    if isinstance(value, int) and key in _UNIT_OF:
        return _e(value) + _unit(key)
    if key in _STATE_KEYS or key.endswith("_state"):
        return _badge(value)
    if isinstance(value, str) and _ISO_TIME.match(value):
        return _when(value)
    if key in ("error", "last_error") and value:
        return '<span class="error">%s</span>' % _e(value)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True)
        return _e(text if len(text) <= 120 else text[:117] + "...")
    return _e(value)


def _unit(key: str) -> str:
    unit = _UNIT_OF.get(key)
    return '<span class="unit">%s</span>' % unit if unit else ""


def _duration(seconds: float) -> str:
    """Seconds with their unit: ms below one second, min/h for long ones."""
    seconds = float(seconds)
    if abs(seconds) < 1:
        text, unit = "%.3g" % (seconds * 1000), "ms"
    elif abs(seconds) < 120:
        text, unit = "%.3g" % seconds, "s"
    elif abs(seconds) < 7200:
        text, unit = "%.3g" % (seconds / 60), "min"
    else:
        text, unit = "%.3g" % (seconds / 3600), "h"
    return '%s<span class="unit">%s</span>' % (_e(text), unit)


def _when(value: str) -> str:
    """An ISO 8601 timestamp as date, time and zone (UTC or its offset); the full value is the tooltip."""
    match = _ISO_TIME.match(value)
    assert match is not None  # _scalar calls this only for a value _ISO_TIME matches
    zone = match.group(4)
    zone = "UTC" if zone in ("Z", "+00:00", "-00:00") else zone or "(no zone)"
    return '<time datetime="%s" title="%s">%s %s %s</time>' % (
        _e(value),
        _e(value),
        _e(match.group(1)),
        _e(match.group(2)),
        _e(zone),
    )


def _cell(key: str, value: object) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and key != "progress"
    return '<td class="num">%s</td>' % _scalar(key, value) if numeric else "<td>%s</td>" % _scalar(key, value)


def _more(rows: Sequence[object]) -> str:
    if len(rows) <= MAX_ROWS:
        return ""
    return '<p class="more">... and %d more (see status.json)</p>' % (len(rows) - MAX_ROWS)


def _rows_table(rows: list[tuple[Any, dict[str, Any]]], first_header: str | None = None) -> str:
    """A table of dicts (``first_header``: a leading column for the mapping key)."""
    columns: list[str] = []
    for _, row in rows[:MAX_ROWS]:
        for key in row:
            if key not in columns:
                columns.append(key)
    head = ([_e(first_header)] if first_header else []) + [_e(c) for c in columns]
    out = ["<table><tr>%s</tr>" % "".join("<th>%s</th>" % h for h in head)]
    for label, row in rows[:MAX_ROWS]:
        cells = ["<td>%s</td>" % _e(label)] if first_header else []
        cells.extend(_cell(c, row.get(c)) for c in columns)
        out.append("<tr>%s</tr>" % "".join(cells))
    out.append("</table>")
    out.append(_more(rows))
    return "".join(out)


def _section_body(key: str, value: Any) -> str:
    if isinstance(value, dict):
        if value and all(isinstance(v, dict) for v in value.values()):
            return _rows_table(list(value.items()), first_header="name")
        return "<table>%s</table>" % "".join(
            "<tr><th>%s</th>%s</tr>" % (_e(k), _cell(k, v)) for k, v in value.items()
        )
    if value and all(isinstance(v, dict) for v in value):
        return _rows_table([(None, v) for v in value])
    items = [_scalar(key, v) for v in value[:MAX_ROWS]]
    return "<p>%s</p>%s" % (", ".join(items) if items else "&ndash;", _more(value))


def _job_rows(rows: list[Any]) -> str:
    """The JobRunner's per-job table: last run, next due time, paused, running."""
    head = ("job", "schedule", "next due", "last run", "took", "outcome", "last error", "paused", "running")
    out = ["<table class=jobs><tr>%s</tr>" % "".join("<th>%s</th>" % h for h in head)]
    for row in rows[:MAX_ROWS]:
        last = row.get("last_run") if isinstance(row.get("last_run"), dict) else {}
        cells = [
            _cell("id", row.get("id")),
            _cell("schedule", row.get("schedule")),
            _cell("next_run", row.get("next_run")),
            _cell("at", last.get("at")),
            _cell("duration", last.get("duration")),
            "<td>%s</td>" % (_badge(last["outcome"]) if last.get("outcome") else "&ndash;"),
            _cell("error", last.get("error")),
            _cell("paused", row.get("paused")),
            _cell("running", row.get("running")),
        ]
        out.append("<tr>%s</tr>" % "".join(cells))
    out.append("</table>")
    out.append(_more(rows))
    return "".join(out)


def _blocker_rows(rows: list[dict[str, Any]]) -> str:
    """The hub watch's worst culprits, each with its stack folded away."""
    head = ("greenlet", "component", "task or job", "blocks", "total", "longest", "last seen", "stack")
    out = ["<table class=blockers><tr>%s</tr>" % "".join("<th>%s</th>" % h for h in head)]
    for row in rows[:MAX_ROWS]:
        component = row.get("component_name")
        stack = row.get("last_stack") or ""
        cells = [
            _cell("greenlet", row.get("greenlet_name")),
            "<td>%s</td>" % (_e(component) if component is not None else _badge("foreign")),
            _cell("task", row.get("task_or_job")),
            _cell("blocks", row.get("count")),
            _cell("seconds", row.get("seconds")),
            _cell("max_seconds", row.get("max_seconds")),
            _cell("last_at", row.get("last_at")),
            "<td><details><summary>stack</summary><pre>%s</pre></details></td>" % _e(stack)
            if stack
            else "<td>&ndash;</td>",
        ]
        out.append("<tr>%s</tr>" % "".join(cells))
    out.append("</table>")
    return "".join(out)


def _is_rows(value: object, key: str) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) and key in r for r in value)


def _special(data: dict[str, Any]) -> dict[str, str]:
    """``{key: html}`` of the sections a kind of component has its own table for."""
    kind = data.get("component")
    if kind == "jobs" and _is_rows(data.get("jobs"), "id"):
        return {"jobs": _job_rows(data["jobs"])}
    if kind == "hubwatch" and isinstance(data.get("top_blockers"), list):
        rows = data["top_blockers"]
        return {"top_blockers": _blocker_rows(rows) if rows else "<p>no blocks seen</p>"}
    return {}


def _card(data: dict[str, Any]) -> str:
    kind = data.get("component", "?")
    name = data.get("name")
    title = '<span class="kind">%s</span>%s' % (_e(kind), _e(name) if name else "")
    hidden = {"component", "name"}
    state_key = next((k for k in _STATE_KEYS if isinstance(data.get(k), str)), None)
    if state_key is not None:
        # The component's own state is the badge next to its title.
        title += " " + _badge(data[state_key])
        hidden.add(state_key)
    special = _special(data)
    wide = special or any(isinstance(v, list) and v and isinstance(v[0], dict) for v in data.values())
    # The cell carries the width, so the card's own markup stays the same for every kind.
    out = [
        '<div class="cell%s"><section data-component="%s"><h2>%s</h2>'
        % (" wide" if wide else "", _e(kind), title)
    ]
    if "error" in data and set(data) <= {"component", "name", "error"}:
        out.append('<p class="error">snapshot failed: %s</p>' % _e(data["error"]))
        hidden.add("error")
    scalars = [(k, v) for k, v in data.items() if k not in hidden and not isinstance(v, (dict, list))]
    if scalars:
        out.append(
            "<table>%s</table>" % "".join("<tr><th>%s</th>%s</tr>" % (_e(k), _cell(k, v)) for k, v in scalars)
        )
    for key, value in data.items():
        if key in special:
            out.append("<h3>%s</h3>%s" % (_e(key.replace("_", " ")), special[key]))
        elif isinstance(value, (dict, list)):
            out.append("<h3>%s</h3>%s" % (_e(key), _section_body(key, value)))
    out.append("</section></div>")
    return "".join(out)


def _events_card(entries: list[dict[str, Any]]) -> str:
    """The latest events, newest first, as the subscriber recorded them."""
    out = [
        '<div class="cell wide"><section data-component="events">'
        '<h2><span class="kind">events</span>recent</h2>'
    ]
    if not entries:
        out.append("<p>none yet</p></section></div>")
        return "".join(out)
    out.append("<table><tr><th>at</th><th>event</th><th>component</th><th>detail</th></tr>")
    for entry in entries[:MAX_ROWS]:
        out.append(
            "<tr>%s<td>%s</td>%s%s</tr>"
            % (
                _cell("at", entry.get("at")),
                _badge(entry.get("event", "")),
                _cell("name", entry.get("name")),
                _cell("detail", entry.get("detail")),
            )
        )
    out.append("</table>%s</section></div>" % _more(entries))
    return "".join(out)


def render_html(data: dict[str, Any], refresh: float = DEFAULT_REFRESH, json_url: str = "status.json") -> str:
    """Return the HTML page (a str) for a dict made by :func:`snapshot`.

    Every text taken from *data* is escaped, so a task named ``<script>`` is
    shown, not run.
    """
    cards = "".join(_card(c) for c in data.get("components", ())) or "<p>no components</p>"
    if isinstance(data.get("events"), list):
        cards += _events_card(data["events"])
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta http-equiv="refresh" content="%s">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<title>greenworks status: %s</title><style>%s</style></head><body>"
        "<header><h1>greenworks status</h1><span>%s pid %s</span><span>version %s</span>"
        '<span id="generated-at">updated %s</span><a href="%s">status.json</a></header>'
        "<main>%s</main></body></html>"
    ) % (
        _e("%g" % refresh),
        _e(data.get("host", "")),
        _STYLE,
        _e(data.get("host", "")),
        _e(data.get("pid", "")),
        _e(data.get("greenworks", "")),
        _scalar("generated_at", data.get("generated_at", "")),
        _e(json_url),
        cards,
    )


def wsgi_app(
    *components: Any, refresh: float = DEFAULT_REFRESH, clock: ClockLike | None = None, events: bool = True
) -> "WSGIApplication":
    """Return a WSGI application showing the status of *components*.

    - ``GET /status.json``: :func:`snapshot` as ``application/json`` (plus
      ``"events"``, the latest events, newest first, when *events*).
    - ``GET /``: an HTML page, one card per component with its numbers and
      states, reloading itself every *refresh* seconds. A running hub watch
      (`greenworks.monitor.watch_hub`) gets a card of its own, with the top
      blockers, without being passed in.
    - ``GET /metrics``: the Prometheus text format of `greenworks.metrics`
      (404 when prometheus_client is not installed).
    - ``HEAD`` of either: the same headers, no body. Other paths answer 404,
      other methods 405. Nothing is cached (``Cache-Control: no-store``).

    Paths are relative to the mount point (``PATH_INFO``), so the app can be
    mounted under a prefix. Each request takes a fresh snapshot; the app keeps
    no state and is safe to call from many greenlets at once.

    :param float refresh: seconds between reloads of the HTML page (> 0).
    :param clock: the `IClock` giving ``generated_at`` (``None``: real time).
    :param bool events: record the greenworks events process-wide
        (:func:`record_events`: a zope.event subscriber, so events are then
        built on every emission) and show the latest. ``False``: no subscriber.
    :raises InvalidArgument: a component has no ``snapshot()`` method, or
        *refresh* is not a positive number.
    """
    _check_components(components)
    if not isinstance(events, bool):
        raise invalid_argument("events", events, "True or False")
    log = record_events() if events else None
    if not is_real(refresh) or not refresh > 0:
        raise invalid_argument("refresh", refresh, "a number of seconds > 0")
    clock = get_clock(clock)

    def application(environ: "WSGIEnvironment", start_response: "StartResponse") -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics" and method in ("GET", "HEAD"):
            return _metrics(start_response, method)
        if path not in ("/", "/status.json"):
            return _plain(start_response, "404 Not Found", "not found: %s\n" % path, method)
        if method not in ("GET", "HEAD"):
            return _plain(
                start_response,
                "405 Method Not Allowed",
                "method not allowed\n",
                method,
                [("Allow", "GET, HEAD")],
            )
        data = snapshot(*components, *_hub_watch(components), clock=clock)
        if log is not None:
            data["events"] = log.entries()
        if path == "/status.json":
            body = json.dumps(data, indent=1).encode("utf-8")
            content_type = "application/json"
        else:
            json_url = environ.get("SCRIPT_NAME", "").rstrip("/") + "/status.json"
            body = render_html(data, refresh, json_url).encode("utf-8")
            content_type = "text/html; charset=utf-8"
        start_response(
            "200 OK",
            [("Content-Type", content_type), ("Content-Length", str(len(body))), _NO_CACHE],
        )
        return [b""] if method == "HEAD" else [body]

    # A function attribute (what the app shows), for introspection; mypy has no notion of one.
    application.components = components  # type: ignore[attr-defined]
    return application


def _hub_watch(components: Sequence[object]) -> tuple[Any, ...]:
    """The running hub watch, unless it was passed in: ``()`` or ``(watch,)``."""
    from greenworks import monitor

    watch = monitor.current()
    return () if watch is None or any(c is watch for c in components) else (watch,)


def _metrics(start_response: "StartResponse", method: str) -> list[bytes]:
    """``/metrics``: the Prometheus text format, when prometheus_client is installed."""
    try:
        from greenworks import metrics

        body, content_type = metrics.exposition()
    except ImportError as exc:
        return _plain(start_response, "404 Not Found", "no metrics here: %s\n" % exc, method)
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), _NO_CACHE]
    start_response("200 OK", headers)
    return [b""] if method == "HEAD" else [body]


def _plain(
    start_response: "StartResponse",
    status: str,
    text: str,
    method: str,
    extra: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    body = text.encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), _NO_CACHE]
    start_response(status, headers + list(extra))
    return [b""] if method == "HEAD" else [body]
