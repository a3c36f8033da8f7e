"""
The package's annotations as a type checker sees them (PEP 561, mypy --strict).

The zero-errors check of the whole package is ``make typecheck``; these tests
pin what a user's own checked code relies on: the marker ships, and the public
generics and protocols mean what they say.
"""

import importlib.resources
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

mypy = pytest.importorskip("mypy", reason="mypy is in the test extra (pip install -e '.[test]')")

# A user's module, checked with the package's own mypy.ini. The one deliberate
# mistake proves that mypy really checked it (a vacuous pass would show no error).
SAMPLE = """
import datetime

from typing_extensions import assert_type

from greenworks import _checks
from greenworks.clock import ClockLike, get_clock
from greenworks.context import Context, with_timeout
from greenworks.dispatcher import Dispatcher, TaskHandle
from greenworks.events import JobFinished
from greenworks.executor import GreenExecutor
from greenworks.testing import FakeClock


def label(n: int) -> str:
    return str(n)


def use_executor(ex: GreenExecutor) -> None:
    assert_type(ex.submit(label, 1).result(), str)
    assert_type(list(ex.map(label, [1, 2])), list[str])
    ex.submit(label, "one")  # the deliberate mistake


def use_dispatcher(pool: Dispatcher) -> None:
    handle = pool.submit(label, 1)
    assert_type(handle, TaskHandle[str])
    assert_type(handle.get(), str)
    assert_type(handle.result(timeout=1.0), str)


def use_clock() -> None:
    clock: ClockLike = FakeClock()
    assert_type(get_clock(clock).now(), datetime.datetime)
    assert_type(with_timeout(None, 1.0, clock=clock), Context)
    assert_type(_checks.seconds("timeout", 1), float)
    assert_type(_checks.seconds("timeout", None, none=True), float | None)


def on_event(event: object) -> None:
    if isinstance(event, JobFinished):
        assert_type(event.tick, datetime.datetime)
        assert_type(event.duration, float)
"""


class TestTyping:
    def test_package_ships_the_py_typed_marker(self):
        """greenworks/py.typed exists, so type checkers read the package's annotations (PEP 561)."""
        assert importlib.resources.files("greenworks").joinpath("py.typed").is_file()

    def test_setup_packages_the_marker(self):
        """setup.py lists py.typed as package data, so wheels and sdists carry it."""
        with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
            assert 'package_data={"greenworks": ["py.typed"]}' in f.read()

    @pytest.mark.slow
    @pytest.mark.timeout(180)
    def test_public_generics_and_protocols_check_as_documented(self, tmp_path):
        """mypy --strict sees Future[T]/TaskHandle[T] from submit(), ClockLike, checks, events; no more."""
        # The default cache (.mypy_cache at the top, shared with `make typecheck`) keeps reruns fast.
        text = textwrap.dedent(SAMPLE)
        mistake = 1 + text.splitlines().index('    ex.submit(label, "one")  # the deliberate mistake')
        sample = tmp_path / "sample.py"
        sample.write_text(text, encoding="utf-8")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--config-file",
                os.path.join(ROOT, "mypy.ini"),
                "--no-error-summary",
                "--hide-error-context",
                str(sample),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
        assert len(errors) == 1, proc.stdout + proc.stderr
        assert 'Argument 2 to "submit" of "GreenExecutor" has incompatible type "str"' in errors[0]
        assert "sample.py:%d:" % mistake in errors[0]
