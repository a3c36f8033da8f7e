"""
The greenworks command line: ``greenworks COMMAND`` or ``python -m greenworks COMMAND``.

- ``greenworks run package.module:registry`` runs every worker provided to a
  registry until SIGTERM or SIGINT (see :mod:`greenworks._run_command`).
- ``greenworks status URL`` prints a running process's ``/status.json`` as
  tables (see :mod:`greenworks._status_command`).
- ``greenworks demo`` is a short live demonstration of the runtime
  (see :mod:`greenworks.demo`).
- ``greenworks --version`` prints the version.

The help texts are plain text, written for a terminal (this docstring is not
shown there). Each subcommand imports its implementation only when chosen,
so that ``run`` monkey-patches before anything else is imported.
"""

import argparse
from collections.abc import Sequence

from greenworks import _checks
from greenworks._version import __version__
from greenworks.exceptions import InvalidArgument

__all__ = ["RUN_EXAMPLE", "build_parser", "main"]

DESCRIPTION = """\
greenworks: a green-thread runtime for gevent applications.

Run the workers of your application, look at a running process, or watch a
short live demo of the runtime."""

EPILOG = """\
examples:
  greenworks demo                          a 15-second live demo, status page on 127.0.0.1
  greenworks run myapp.workers:registry    run the workers provided to a registry
  greenworks status http://127.0.0.1:8081  print a running process's status as tables
  greenworks run --help                    how to write a registry (an example)

'greenworks COMMAND' and 'python -m greenworks COMMAND' are the same."""

#: The registry module shown by ``greenworks run --help``; tests/test_cli.py runs it.
RUN_EXAMPLE = """\
from zope.interface.registry import Components
from greenworks.runutil import provide_worker, repeat

class Heartbeat:  # a worker configurer: workers() returns the workers to run
    def workers(self):
        return [repeat(5.0, lambda ctx: print("alive", flush=True), start_immediately=True)]

registry = Components("myapp")
provide_worker(registry, Heartbeat())"""

RUN_DESCRIPTION = """\
Run every worker provided to a zope.interface registry until SIGTERM or
SIGINT (Ctrl-C). The process is monkey-patched before TARGET is imported.
On the first signal every worker's context is cancelled and the command
waits for their cleanup; a second signal kills them.

A registry in five lines plus imports (save it as myapp.py):

%s

then run it from the directory holding myapp.py:

  greenworks run myapp:registry

A worker is a callable f(ctx) (or an object with run(ctx)) that returns once
ctx is cancelled; greenworks.runutil has repeat(), retry() and
DeclarativeWorker to build them. A configurer may also be a factory
f(registry) that looks its dependencies up in the registry.""" % "\n".join(
    "  " + line if line else "" for line in RUN_EXAMPLE.splitlines()
)

RUN_EPILOG = """\
exit codes:
  0      clean stop (or every worker returned)
  1      a worker failed (each error is printed)
  2      bad TARGET: module not found, attribute missing, not a registry
  128+N  killed by a second signal N"""

STATUS_DESCRIPTION = """\
Fetch the status of a running greenworks process once and print it as
tables: the process, one row per component with its state and figures,
the rows of each component (tasks, jobs, hub blockers) and the latest
events. URL is the status page (greenworks.status.wsgi_app), with or
without the status.json at its end."""

STATUS_EPILOG = """\
examples:
  greenworks status http://127.0.0.1:8081
  greenworks status http://web-1:8000/_status/status.json --timeout 3

exit codes: 0 printed, 2 the URL cannot be fetched or is not a status page."""

DEMO_DESCRIPTION = """\
A short live demonstration of the runtime in one process, with no server
needed: an elastic pool scaling, reconciled workers, restarted tasks and
periodic jobs, a live status table on the terminal (one line per second
when piped) and a status page on 127.0.0.1. Ctrl-C stops it cleanly."""

DEMO_EPILOG = """\
examples:
  greenworks demo
  greenworks demo --seconds 60 --status-port 8081"""


def _positive_seconds(text: str) -> float:
    """argparse type: a number of seconds > 0 (the library's one rule, :func:`_checks.seconds`)."""
    try:
        return _checks.seconds("seconds", float(text), positive=True)
    except (ValueError, InvalidArgument):
        raise argparse.ArgumentTypeError("expected a number of seconds > 0, got %r" % text) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``greenworks`` command (plain-text help, examples in each epilog)."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="greenworks", description=DESCRIPTION, epilog=EPILOG, formatter_class=raw
    )
    parser.add_argument("--version", action="version", version="greenworks %s" % __version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run every worker provided to a registry",
        description=RUN_DESCRIPTION,
        epilog=RUN_EPILOG,
        formatter_class=raw,
    )
    run.add_argument(
        "target", metavar="TARGET", help="'package.module:attribute' naming a zope.interface registry"
    )

    status = commands.add_parser(
        "status",
        help="print a running process's status page as tables",
        description=STATUS_DESCRIPTION,
        epilog=STATUS_EPILOG,
        formatter_class=raw,
    )
    status.add_argument("url", metavar="URL", help="the status page, e.g. http://127.0.0.1:8081")
    status.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=10.0,
        help="seconds to wait for the process to answer (default 10)",
    )

    demo = commands.add_parser(
        "demo",
        help="a short live demo of the runtime",
        description=DEMO_DESCRIPTION,
        epilog=DEMO_EPILOG,
        formatter_class=raw,
    )
    demo.add_argument("--seconds", type=float, default=15.0, help="how long to run (default 15)")
    demo.add_argument(
        "--status-port",
        type=int,
        default=0,
        help="serve the status page on 127.0.0.1:PORT (0: any free port)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse *argv* (default ``sys.argv[1:]``) and run the chosen command; return the exit code.

    :raises SystemExit: for ``--help``, ``--version`` and bad arguments (argparse's behaviour).
    """
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from greenworks._run_command import run_target

        return run_target(args.target)
    if args.command == "status":
        from greenworks._status_command import run_status

        return run_status(args.url, timeout=args.timeout)
    from greenworks.demo import main as demo_main

    return demo_main(args)
