"""Tests for ``greenworks run`` (greenworks._run_command): real subprocesses, real signals."""

import os
import signal
import subprocess
import sys

import pytest
from zope.interface.registry import Components

from greenworks import _greenlets, cli
from greenworks._run_command import EXIT_BAD_TARGET, EXIT_FAILED, EXIT_OK, BadTarget, load_target

APPS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Interpreter start-up and imports on a busy machine; never a synchronisation sleep.
PROCESS_TIMEOUT = 30


def start(target):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([APPS_DIR, ROOT_DIR, env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "greenworks", "run", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=APPS_DIR,
        env=env,
    )


def read_until(proc, predicate):
    """Read stdout lines until *predicate(lines)* holds; return them (fail on EOF)."""
    lines = []
    while not predicate(lines):
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail("process ended early; stdout %r, stderr %r" % (lines, err))
        lines.append(line.rstrip("\n"))
    return lines


def finish(proc):
    try:
        out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:  # pragma: no cover - only on a hang
        proc.kill()
        out, err = proc.communicate()
        pytest.fail("process did not exit; stdout %r, stderr %r" % (out, err))
    return out.splitlines(), err


@pytest.mark.slow
@pytest.mark.timeout(PROCESS_TIMEOUT * 2)
class TestSignals:
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_signal_cancels_workers_and_waits_for_their_cleanup(self, signum):
        """A SIGTERM or SIGINT cancels every provided worker, waits for each cleanup, and exits 0."""
        proc = start("run_registry_app:registry")
        started = read_until(proc, lambda lines: len(lines) == 3)
        assert sorted(line.split()[1:3] for line in started) == [
            ["commits", "/run_registry_app/Fetchers/commits"],
            ["janitor", "/run_registry_app/Janitor"],
            ["prs", "/run_registry_app/Fetchers/prs"],
        ]
        # The target was imported after monkey-patching.
        assert all(line.endswith("patched=True") for line in started)
        proc.send_signal(signum)
        rest, err = finish(proc)
        assert proc.returncode == EXIT_OK, err
        assert sorted(rest) == ["cleanup done commits", "cleanup done janitor", "cleanup done prs"]
        assert "%s received, stopping workers" % signal.Signals(signum).name in err

    def test_second_signal_kills_the_workers(self):
        """A second signal kills workers stuck in their cleanup and exits 128 + the signal number."""
        proc = start("run_registry_app:stubborn_registry")
        read_until(proc, lambda lines: lines[-1:] == ["started stubborn /run_registry_app/Stubborn"])
        proc.send_signal(signal.SIGTERM)
        read_until(proc, lambda lines: lines[-1:] == ["cleanup started"])
        proc.send_signal(signal.SIGTERM)
        rest, err = finish(proc)
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert rest == ["killed"]
        assert "SIGTERM received again, killing workers" in err

    def test_missing_module_exits_non_zero_with_one_readable_line(self):
        """A target whose module does not exist exits 2 with a one-line "module not found" message."""
        proc = start("no_such_module_for_greenworks:registry")
        out, err = finish(proc)
        assert proc.returncode == EXIT_BAD_TARGET
        assert out == []
        assert err.splitlines() == [
            "greenworks run: module not found: 'no_such_module_for_greenworks' "
            "(from target 'no_such_module_for_greenworks:registry')"
        ]


class TestLoadTarget:
    @pytest.fixture(autouse=True)
    def _apps_on_path(self, monkeypatch):
        monkeypatch.syspath_prepend(APPS_DIR)

    def test_loads_a_registry(self):
        """load_target returns the Components the target names."""
        registry = load_target("run_registry_app:registry")
        assert isinstance(registry, Components)

    @pytest.mark.parametrize(
        ("target", "message"),
        [
            ("no_such_module_for_greenworks:registry", "module not found: 'no_such_module_for_greenworks'"),
            ("run_registry_app.nested:registry", "module not found: 'run_registry_app.nested'"),
            ("run_registry_app:nope", "attribute missing: 'run_registry_app' has no attribute 'nope'"),
            ("run_registry_app:Fetchers.nope", "attribute missing: 'run_registry_app:Fetchers' has no"),
            (
                "run_registry_app:not_registry",
                "not a registry: 'run_registry_app:not_registry' is of type object",
            ),
            ("run_registry_app", "bad target 'run_registry_app': expected 'package.module:attribute'"),
            ("broken_app:registry", "error importing module 'broken_app': ModuleNotFoundError"),
        ],
    )
    def test_bad_targets_have_readable_messages(self, target, message):
        """Each kind of bad target raises BadTarget with a message saying what is wrong."""
        with pytest.raises(BadTarget) as info:
            load_target(target)
        assert str(info.value).startswith(message)
        assert "\n" not in str(info.value)


class TestRunTargetInProcess:
    @pytest.fixture(autouse=True)
    def _apps_on_path(self, monkeypatch):
        monkeypatch.syspath_prepend(APPS_DIR)

    def test_bad_target_prints_one_line_and_exits_2(self, capsys):
        """greenworks run with a missing attribute exits 2 and prints one "attribute missing" line."""
        assert cli.main(["run", "run_registry_app:nope"]) == EXIT_BAD_TARGET
        err = capsys.readouterr().err
        assert err.splitlines() == [
            "greenworks run: attribute missing: 'run_registry_app' has no attribute 'nope' "
            "(from target 'run_registry_app:nope')"
        ]

    def test_failing_worker_exits_1_and_reports_the_error(self, capsys):
        """A failing worker stops the others and the command exits 1, naming the error on stderr."""
        assert cli.main(["run", "run_registry_app:failing_registry"]) == EXIT_FAILED
        captured = capsys.readouterr()
        assert "RuntimeError: disk on fire" in captured.err
        assert "cleanup done bystander" in captured.out
        assert _greenlets.alive() == []

    def test_registry_without_workers_exits_0(self, capsys):
        """A registry with nothing provided returns at once with exit code 0 and says so."""
        assert cli.main(["run", "run_registry_app:empty_registry"]) == EXIT_OK
        assert "no workers provided" in capsys.readouterr().err

    def test_failing_factory_exits_1(self, capsys):
        """A configurer factory that raises makes the command exit 1 with its error on stderr."""
        assert cli.main(["run", "run_registry_app:bad_factory_registry"]) == EXIT_FAILED
        assert "error providing workers" in capsys.readouterr().err

    @pytest.mark.slow
    @pytest.mark.timeout(PROCESS_TIMEOUT * 2)
    def test_python_signal_handlers_are_restored(self):
        """[issue 14 item 10] After run_target returns, ^C raises KeyboardInterrupt again.

        The command installs gevent signal watchers while it runs; cancelling
        a libev watcher leaves SIG_DFL behind, so the command puts Python's
        handlers back. The signal is raised with ``signal.raise_signal``, in
        the main thread: ``os.kill`` of the own pid may be delivered to any
        thread (gevent's resolver threads), and then nothing wakes the main
        thread's event loop until its sleep ends: that was the flake.

        The child first installs Python's ^C handler itself: a process started
        as a background job of a non-interactive shell (``cmd &``, as a CI
        script may) inherits SIGINT ignored, and Python then leaves it ignored.
        """
        script = (
            "from gevent import monkey; monkey.patch_all()\n"
            "import signal, gevent\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from greenworks import cli\n"
            "cli.main(['run', 'run_registry_app:quick_registry'])\n"
            "print('restored', signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
            "try:\n"
            "    signal.raise_signal(signal.SIGINT)\n"
            "    gevent.sleep(5)\n"
            "except KeyboardInterrupt:\n"
            "    print('KeyboardInterrupt raised')\n"
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([APPS_DIR, ROOT_DIR]))
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=PROCESS_TIMEOUT
        )
        lines = proc.stdout.splitlines()
        assert lines == ["finished at once", "restored True", "KeyboardInterrupt raised"], proc.stderr
