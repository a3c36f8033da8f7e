"""
Status snapshots of running components, as JSON and as a page a person reads.

Every greenworks component (`Runner`, `Dispatcher`, `TaskManager`,
`JobRunner`) has a ``snapshot()`` method returning a JSON-ready dict whose
``"component"`` key says what it is. This module gathers them:

- :func:`snapshot` collects the snapshots of any number of components into
  one dict, with the process it describes (version, host, pid, time).
- :func:`wsgi_app` serves that dict at ``/status.json`` and a small
  self-refreshing HTML page at ``/``. It is plain WSGI, so it runs under
  ``gevent.pywsgi``, gunicorn, or mounted beside an application::

      from gevent.pywsgi import WSGIServer
      from greenworks.status import wsgi_app

      WSGIServer(("127.0.0.1", 8081), wsgi_app(dispatcher, manager)).serve_forever()

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

from greenworks._checks import is_real
from greenworks._version import __version__
from greenworks.clock import get_clock
from greenworks.exceptions import invalid_argument

__all__ = ["render_html", "snapshot", "wsgi_app"]

logger = logging.getLogger(__name__)

#: Seconds between two reloads of the HTML page.
DEFAULT_REFRESH = 2.0
#: Rows shown per table on the HTML page; the JSON always has every row.
MAX_ROWS = 50

_NO_CACHE = ("Cache-Control", "no-store, max-age=0")


def _check_components(components):
    for index, component in enumerate(components):
        if not callable(getattr(component, "snapshot", None)):
            raise invalid_argument(
                "components[%d]" % index, component, "a component with a snapshot() method"
            )


def _jsonable(value):
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


def _component_snapshot(component):
    try:
        data = component.snapshot()
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


def snapshot(*components, clock=None):
    """Return one JSON-serialisable dict describing this process and *components*.

    ::

        {"greenworks": "0.1.0", "generated_at": "2026-01-01T00:00:00+00:00",
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

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:baseline}
header h1{font-size:18px;margin:0}header span{opacity:.8}header a{color:#9cf}
main{display:flex;flex-wrap:wrap;gap:14px;padding:14px;align-items:flex-start}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:10px 14px;min-width:260px}
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


_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT(\d\d:\d\d:\d\d)(\.\d+)?([+-]\d\d:\d\d|Z)?$")


def _e(value):
    return html.escape(str(value), quote=True)


def _badge(value):
    text = str(value)
    low = text.lower()
    kind = "ok" if low in _GOOD else "warn" if low in _WARN else "bad" if low in _BAD else ""
    return '<span class="badge %s">%s</span>' % (kind, _e(text))


def _scalar(key, value):
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return _badge("yes" if value else "no")
    if key == "progress" and isinstance(value, (int, float)):
        width = max(0.0, min(100.0, float(value)))
        return '<span class="bar"><i style="width:%.0f%%"></i></span>%.0f%%' % (width, value)
    if isinstance(value, float):
        return _e("%.3g" % value if abs(value) < 1e6 else "%.0f" % value)
    if key in _STATE_KEYS or key.endswith("_state"):
        return _badge(value)
    if isinstance(value, str) and _ISO_TIME.match(value):
        # The time of day reads at a glance; the full timestamp is the tooltip.
        return '<time datetime="%s" title="%s">%s</time>' % (
            _e(value),
            _e(value),
            _e(_ISO_TIME.match(value).group(1)),
        )
    if key in ("error", "last_error") and value:
        return '<span class="error">%s</span>' % _e(value)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True)
        return _e(text if len(text) <= 120 else text[:117] + "...")
    return _e(value)


def _cell(key, value):
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and key != "progress"
    return '<td class="num">%s</td>' % _scalar(key, value) if numeric else "<td>%s</td>" % _scalar(key, value)


def _more(rows):
    if len(rows) <= MAX_ROWS:
        return ""
    return '<p class="more">... and %d more (see status.json)</p>' % (len(rows) - MAX_ROWS)


def _rows_table(rows, first_header=None):
    """A table of dicts (``first_header``: a leading column for the mapping key)."""
    columns = []
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


def _section_body(key, value):
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


def _card(data):
    kind = data.get("component", "?")
    name = data.get("name")
    title = '<span class="kind">%s</span>%s' % (_e(kind), _e(name) if name else "")
    hidden = {"component", "name"}
    state_key = next((k for k in _STATE_KEYS if isinstance(data.get(k), str)), None)
    if state_key is not None:
        # The component's own state is the badge next to its title.
        title += " " + _badge(data[state_key])
        hidden.add(state_key)
    out = ['<section data-component="%s"><h2>%s</h2>' % (_e(kind), title)]
    if "error" in data and set(data) <= {"component", "name", "error"}:
        out.append('<p class="error">snapshot failed: %s</p>' % _e(data["error"]))
        hidden.add("error")
    scalars = [(k, v) for k, v in data.items() if k not in hidden and not isinstance(v, (dict, list))]
    if scalars:
        out.append(
            "<table>%s</table>" % "".join("<tr><th>%s</th>%s</tr>" % (_e(k), _cell(k, v)) for k, v in scalars)
        )
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            out.append("<h3>%s</h3>%s" % (_e(key), _section_body(key, value)))
    out.append("</section>")
    return "".join(out)


def render_html(data, refresh=DEFAULT_REFRESH, json_url="status.json"):
    """Return the HTML page (a str) for a dict made by :func:`snapshot`.

    Every text taken from *data* is escaped, so a task named ``<script>`` is
    shown, not run.
    """
    cards = "".join(_card(c) for c in data.get("components", ())) or "<p>no components</p>"
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


def wsgi_app(*components, refresh=DEFAULT_REFRESH, clock=None):
    """Return a WSGI application showing the status of *components*.

    - ``GET /status.json``: :func:`snapshot` as ``application/json``.
    - ``GET /``: an HTML page, one card per component with its numbers and
      states, reloading itself every *refresh* seconds.
    - ``HEAD`` of either: the same headers, no body. Other paths answer 404,
      other methods 405. Nothing is cached (``Cache-Control: no-store``).

    Paths are relative to the mount point (``PATH_INFO``), so the app can be
    mounted under a prefix. Each request takes a fresh snapshot; the app keeps
    no state and is safe to call from many greenlets at once.

    :param float refresh: seconds between reloads of the HTML page (> 0).
    :param clock: the `IClock` giving ``generated_at`` (``None``: real time).
    :raises InvalidArgument: a component has no ``snapshot()`` method, or
        *refresh* is not a positive number.
    """
    _check_components(components)
    if not is_real(refresh) or not refresh > 0:
        raise invalid_argument("refresh", refresh, "a number of seconds > 0")
    clock = get_clock(clock)

    def application(environ, start_response):
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
        data = snapshot(*components, clock=clock)
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

    application.components = components
    return application


def _metrics(start_response, method):
    """``/metrics``: the Prometheus text format, when prometheus_client is installed."""
    try:
        from greenworks import metrics

        body, content_type = metrics.exposition()
    except ImportError as exc:
        return _plain(start_response, "404 Not Found", "no metrics here: %s\n" % exc, method)
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), _NO_CACHE]
    start_response("200 OK", headers)
    return [b""] if method == "HEAD" else [body]


def _plain(start_response, status, text, method, extra=()):
    body = text.encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), _NO_CACHE]
    start_response(status, headers + list(extra))
    return [b""] if method == "HEAD" else [body]
