"""
``greenworks run package.module:attribute``: run every worker provided to a registry.

The target names a ``zope.interface.registry.Components`` to which workers
were provided with :func:`greenworks.runutil.provide_worker`. The command:

1. monkey-patches the process (before importing the target, so the target's
   own imports see the patched stdlib);
2. imports the target, resolving a dotted attribute path after the colon;
   the current directory is importable, as with ``python -m``;
3. runs :func:`greenworks.runutil.run_provided_workers` on a root context;
4. on the first SIGTERM or SIGINT cancels that context and waits for every
   worker to finish its cleanup; on a second one kills the workers.

Exit codes: 0 after a clean stop (or when every worker stopped gracefully),
1 when workers failed, 2 for a bad target (one readable line on stderr:
"module not found", "attribute missing", "not a registry"), and 128 + the
signal number when a second signal killed the workers.
"""

import importlib
import os
import sys
from typing import Any, TextIO

__all__ = ["EXIT_BAD_TARGET", "EXIT_FAILED", "EXIT_OK", "load_target", "run_target"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_TARGET = 2

_KEEPALIVE = 60.0


class BadTarget(Exception):
    """The target cannot be loaded; the message is the one line shown to the user."""


def _module_missing(exc: ImportError, module_name: str) -> bool:
    """Whether *exc* says *module_name* itself (or a parent package) does not exist."""
    missing = getattr(exc, "name", None)
    return missing is not None and (module_name == missing or module_name.startswith(missing + "."))


def load_target(target: str) -> Any:
    """Import ``package.module:attribute`` and return the registry it names.

    :raises BadTarget: with a one-line message for a malformed target, a
        missing module, a missing attribute or an object that is not a
        ``zope.interface.registry.Components``.
    """
    from zope.interface.interfaces import IComponents

    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise BadTarget("bad target %r: expected 'package.module:attribute'" % (target,))
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _module_missing(exc, module_name):
            raise BadTarget("module not found: %r (from target %r)" % (module_name, target)) from None
        raise BadTarget("error importing module %r: %s: %s" % (module_name, type(exc).__name__, exc)) from exc
    except Exception as exc:
        raise BadTarget("error importing module %r: %s: %s" % (module_name, type(exc).__name__, exc)) from exc
    path = module_name
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            message = "attribute missing: %r has no attribute %r (from target %r)" % (path, part, target)
            raise BadTarget(message) from None
        path = "%s.%s" % (path, part) if path != module_name else "%s:%s" % (path, part)
    if not IComponents.providedBy(obj):
        raise BadTarget(
            "not a registry: %r is of type %s, expected a zope.interface.registry.Components"
            % (target, type(obj).__name__)
        )
    return obj


def _configure_logging() -> None:
    import logging

    if not logging.root.handlers:
        from greenworks.runutil import SubsystemFilter

        handler = logging.StreamHandler()
        handler.addFilter(SubsystemFilter())
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(subsystem)s: %(message)s")
        )
        logging.root.addHandler(handler)
        logging.root.setLevel(logging.INFO)


def run_target(target: str, *, stderr: TextIO | None = None) -> int:
    """Run every worker provided to the registry *target* until a signal stops them.

    Blocks the calling (main) greenlet. Installs SIGTERM and SIGINT handlers
    with ``gevent.signal_handler`` for the duration and removes them after.

    :param str target: ``"package.module:attribute"``.
    :param stderr: where the one-line messages go (default ``sys.stderr``).
    :return int: the process exit code (see the module docstring).
    """
    from gevent import monkey

    # First, so that the target module and everything it imports is patched.
    monkey.patch_all()

    import signal

    import gevent
    from gevent.event import Event

    from greenworks import _greenlets
    from greenworks.clock import get_clock
    from greenworks.context import with_cancel
    from greenworks.runutil import provided_workers, run_all_workers

    out = sys.stderr if stderr is None else stderr
    clock = get_clock()

    def say(message: str) -> None:
        print("greenworks run: %s" % message, file=out, flush=True)

    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        registry = load_target(target)
    except BadTarget as exc:
        say(str(exc))
        return EXIT_BAD_TARGET
    _configure_logging()
    try:
        workers = provided_workers(registry)
    except Exception as exc:
        say("error providing workers of %s: %s: %s" % (target, type(exc).__name__, exc))
        return EXIT_FAILED
    if not workers:
        say("no workers provided to %s, nothing to run" % target)
        return EXIT_OK

    root = with_cancel()
    received: list[int] = []
    runner = _greenlets.spawn("greenworks.run[%s]" % target, run_all_workers, root, *workers)

    def on_signal(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            say("%s received, stopping workers (send it again to kill them)" % name)
            root.cancel()
        else:
            say("%s received again, killing workers" % name)
            runner.kill(block=False)

    signums = (signal.SIGTERM, signal.SIGINT)
    saved = {sig: signal.getsignal(sig) for sig in signums}
    handlers = [gevent.signal_handler(sig, on_signal, sig) for sig in signums]
    finished = Event()
    runner.rawlink(lambda _greenlet: finished.set())
    try:
        # Signal watchers do not keep the loop alive: with every worker
        # blocked on an event, a plain join() would end in LoopExit. A
        # periodic timeout does keep it alive.
        while not clock.wait(finished, _KEEPALIVE):
            pass
    finally:
        for handler in handlers:
            handler.cancel()
        # Cancelling a libev watcher leaves the C-level disposition at
        # SIG_DFL; put back what Python had (e.g. KeyboardInterrupt for ^C).
        for sig, previous in saved.items():
            if previous is not None:
                signal.signal(sig, previous)
        root.cancel()
        if not runner.dead:
            runner.kill()

    if len(received) > 1:
        say("workers killed")
        return 128 + received[-1]
    if runner.successful():
        return EXIT_OK
    error = runner.exception
    say("workers failed: %s" % error)
    for sub in getattr(error, "exceptions", (error,)):
        say("  %s: %s" % (type(sub).__name__, sub))
    return EXIT_FAILED
