"""
``greenworks status URL``: print a running process's ``/status.json`` as tables.

The URL is the status page of a process serving `greenworks.status.wsgi_app`
(the demo, a gunicorn app, your own ``WSGIServer``): ``http://host:port``,
``http://host:port/mount/`` or the ``.../status.json`` address itself. The
command fetches the JSON once and prints:

1. one line about the process (version, host, pid, when the snapshot was taken);
2. one table with a row per component: kind, name, state, and its figures as
   ``key=value`` pairs (an error entry shows its error instead);
3. one table per list of rows a component carries (a TaskManager's tasks, a
   JobRunner's jobs, a hub watch's blockers), and the latest events.

It is a plain HTTP client: it does not monkey-patch, import gevent or start
anything. Exit codes: 0 after printing, 2 when the URL cannot be fetched or
does not answer a greenworks status document (one readable line on stderr).
"""

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, TextIO

from greenworks import _checks

__all__ = [
    "EXIT_BAD_URL",
    "EXIT_OK",
    "StatusError",
    "fetch_status",
    "format_status",
    "run_status",
    "status_url",
]

EXIT_OK = 0
EXIT_BAD_URL = 2

#: Rows shown per table; ``status.json`` itself always has every row.
MAX_ROWS = 20
#: Events shown (the newest); the JSON has more.
MAX_EVENTS = 10
#: Characters shown per cell before it is cut with "...".
MAX_CELL = 60

# Keys shown in their own column, not among the figures.
_TITLE_KEYS = ("component", "name", "state", "status", "error")


class StatusError(Exception):
    """The status document cannot be had; the message is the one line shown to the user."""


def status_url(url: str) -> str:
    """Return the ``status.json`` address for *url* (a page address or the JSON's own).

    :raises StatusError: *url* is not an ``http://`` or ``https://`` URL with a host.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StatusError("bad URL %r: expected http://HOST:PORT[/PATH]" % (url,))
    path = parts.path
    if not path.endswith(".json"):
        path = path.rstrip("/") + "/status.json"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def fetch_status(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """Fetch and parse the status document at *url* (see :func:`status_url`).

    Blocks for at most about *timeout* seconds per network operation.

    :raises StatusError: the server cannot be reached, answers an HTTP error,
        or answers something that is not a greenworks status document.
    """
    address = status_url(url)
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise StatusError("%s answered HTTP %d %s" % (address, exc.code, exc.reason)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusError("cannot reach %s: %s" % (address, reason)) from None
    try:
        data = json.loads(body)
    except ValueError:
        raise StatusError("%s did not answer JSON (is it a greenworks status page?)" % address) from None
    if not isinstance(data, dict) or not isinstance(data.get("components"), list):
        raise StatusError("%s is not a greenworks status document (no 'components' list)" % address)
    return data


def _text(value: object) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = "%g" % value
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True)
    else:
        text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-aligned columns two spaces apart; the header in capitals."""
    cells = [[header.upper() for header in headers]] + [[_text(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def _is_rows(value: object) -> bool:
    """A non-empty list of dicts, or a non-empty dict of dicts: a table of its own."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(item, dict) for item in value)
    if isinstance(value, dict):
        return bool(value) and all(isinstance(item, dict) for item in value.values())
    return False


def _rows_table(title: str, value: Any, limit: int = MAX_ROWS) -> list[str]:
    # A dict of rows (a TaskManager's workers by id) gets its keys as the first column.
    keyed = [{"key": key, **row} for key, row in value.items()] if isinstance(value, dict) else list(value)
    headers: list[str] = []
    for row in keyed:
        headers.extend(key for key in row if key not in headers)
    lines = ["", title]
    lines += _table(headers, [[row.get(header) for header in headers] for row in keyed[:limit]])
    if len(keyed) > limit:
        lines.append("... and %d more rows (see status.json)" % (len(keyed) - limit))
    return lines


def _figures(component: dict[str, Any]) -> str:
    pairs = []
    for key, value in component.items():
        if key in _TITLE_KEYS or _is_rows(value) or key == "started_at":
            continue
        if isinstance(value, (list, dict)) and not value:
            continue
        pairs.append("%s=%s" % (key, _text(value)))
    return " ".join(pairs)


def format_status(data: dict[str, Any]) -> str:
    """Return the status document *data* as the text :func:`run_status` prints (no trailing newline)."""
    lines = [
        "greenworks %s on %s, pid %s, snapshot at %s"
        % (
            data.get("greenworks", "?"),
            data.get("host", "?"),
            data.get("pid", "?"),
            data.get("generated_at", "?"),
        ),
        "",
    ]
    components = [c for c in data.get("components", []) if isinstance(c, dict)]
    rows = []
    for component in components:
        state = component.get("state", component.get("status"))
        if "error" in component:
            rows.append([component.get("component"), component.get("name"), "error", component["error"]])
        else:
            rows.append([component.get("component"), component.get("name"), state, _figures(component)])
    if rows:
        # The figures are the last column, never cut: they are what the reader came for.
        head = _table(["component", "name", "state", "x"], [[*row[:3], "x"] for row in rows])
        width = len(head[0]) - 1
        lines.append(head[0][:width] + "FIGURES")
        for line, row in zip(head[1:], rows, strict=True):
            lines.append((line[:width] + row[3]).rstrip())
    else:
        lines.append("(no components)")
    for component in components:
        for key, value in component.items():
            if _is_rows(value):
                title = "%s %s: %s" % (component.get("component"), component.get("name"), key)
                lines += _rows_table(title, value)
    events = data.get("events")
    if _is_rows(events):
        lines += _rows_table("latest events (newest first)", events, MAX_EVENTS)
    return "\n".join(lines)


def run_status(
    url: str, *, timeout: float = 10.0, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Fetch *url*'s status document and print it as tables; return the exit code.

    Blocks on the network for at most about *timeout* seconds per operation.

    :raises InvalidArgument: *timeout* is not a number of seconds > 0.
    """
    timeout = _checks.seconds("timeout", timeout, positive=True)
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        data = fetch_status(url, timeout)
    except StatusError as exc:
        print("greenworks status: %s" % exc, file=err, flush=True)
        return EXIT_BAD_URL
    print(format_status(data), file=out, flush=True)
    return EXIT_OK
