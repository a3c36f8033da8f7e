"""
A registry for the ``greenworks run`` subprocess tests (tests/test_run_command.py).

- ``registry``: two configurers with three workers in all. Each worker prints
  ``started <name>`` once running and ``cleanup done <name>`` after its
  context was cancelled and a short cleanup (a monkey-patched ``time.sleep``)
  finished; the test reads these lines from stdout.
- ``stubborn_registry``: one worker that prints ``cleanup started`` on
  cancellation and then never finishes; only a kill ends it, which it reports
  as ``killed``.
- ``not_registry``: a plain object.
"""

import sys
import time

from gevent.event import Event
from zope.interface import implementer
from zope.interface.registry import Components

from greenworks.interfaces import IWorkerConfigurer
from greenworks.runutil import DeclarativeWorker, current_subsystem, provide_worker

#: Proof that the command monkey-patched before importing this module.
PATCHED_BEFORE_IMPORT = __import__("gevent.monkey").monkey.is_module_patched("time")


def say(line):
    print(line, flush=True)


def polite_worker(name):
    def run(ctx):
        say("started %s %s patched=%s" % (name, current_subsystem(), PATCHED_BEFORE_IMPORT))
        ctx.wait()
        time.sleep(0.05)  # cleanup that yields: the command must wait for it
        say("cleanup done %s" % name)

    return run


@implementer(IWorkerConfigurer)
class Fetchers:
    def workers(self):
        return [
            DeclarativeWorker("commits", polite_worker("commits")),
            DeclarativeWorker("prs", polite_worker("prs")),
            None,
        ]


@implementer(IWorkerConfigurer)
class Janitor:
    def workers(self):
        return [polite_worker("janitor")]


registry = Components("run_registry_app")
provide_worker(registry, Fetchers())
provide_worker(registry, lambda _registry: Janitor())


def stubborn(ctx):
    say("started stubborn %s" % current_subsystem())
    ctx.wait()
    say("cleanup started")
    try:
        Event().wait()
    finally:
        say("killed")
        sys.stdout.flush()


@implementer(IWorkerConfigurer)
class Stubborn:
    def workers(self):
        return [stubborn]


stubborn_registry = Components("stubborn")
provide_worker(stubborn_registry, Stubborn())

not_registry = object()


def failing(ctx):
    raise RuntimeError("disk on fire")


@implementer(IWorkerConfigurer)
class Failing:
    def workers(self):
        return [failing, polite_worker("bystander")]


failing_registry = Components("failing")
provide_worker(failing_registry, Failing())

empty_registry = Components("empty")


def bad_factory(_registry):
    raise LookupError("no database configured")


bad_factory_registry = Components("bad_factory")
provide_worker(bad_factory_registry, bad_factory)


def finished_at_once(ctx):
    say("finished at once")


@implementer(IWorkerConfigurer)
class Quick:
    def workers(self):
        return [finished_at_once]


#: One worker that returns at once, so the command installs its signal
#: handlers, runs, and removes them again without any signal sent.
quick_registry = Components("quick")
provide_worker(quick_registry, Quick())
