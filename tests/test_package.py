"""Packaging promises: one version, a light import, and the command line."""

import json
import os
import re
import subprocess
import sys

import greenworks
from greenworks import _version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONAL = ("redis", "croniter", "pytest", "hypothesis", "mock", "gunicorn")


class TestPackage:
    def test_version_has_one_source(self):
        """greenworks.__version__ comes from _version.py, which setup.py reads too."""
        assert greenworks.__version__ == _version.__version__
        with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
            assert "_version.py" in f.read()
        assert re.match(r"^\d+\.\d+\.\d+", greenworks.__version__)

    def test_import_needs_only_install_requirements(self):
        """Importing greenworks and its interfaces loads none of the optional packages."""
        code = (
            "import json, sys; import greenworks, greenworks.interfaces; "
            "print(json.dumps(sorted(m for m in %r if m in sys.modules)))" % (OPTIONAL,)
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert json.loads(out.stdout) == []

    def test_changelog_opens_with_the_version_under_development(self):
        """CHANGES.rst's first heading is the package's version, unreleased (0.2.0.dev0 -> 0.2.0)."""
        from greenworks._version import __version__

        with open(os.path.join(ROOT, "CHANGES.rst"), encoding="utf-8") as f:
            headings = [line for line in f.read().splitlines() if line.endswith("(unreleased)")]
        assert headings[0] == "%s (unreleased)" % __version__.partition(".dev")[0]

    def test_readme_opens_with_the_two_commands(self):
        """README.rst starts with `make demo` then `make test`, before any other command."""
        with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
            commands = re.findall(r"^\s+(make \w+)", f.read(), flags=re.M)
        assert commands[:2] == ["make demo", "make test"]


class TestCommandLine:
    def test_help_lists_the_commands(self):
        """`python -m greenworks --help` names the run and demo commands."""
        out = subprocess.run(
            [sys.executable, "-m", "greenworks", "--help"], capture_output=True, text=True, check=True
        )
        assert "run" in out.stdout and "demo" in out.stdout

    def test_unknown_command_exits_non_zero(self):
        """An unknown command is refused with a usage message."""
        proc = subprocess.run([sys.executable, "-m", "greenworks", "bogus"], capture_output=True, text=True)
        assert proc.returncode != 0 and "invalid choice" in proc.stderr


class TestReExports:
    def test_every_public_name_resolves_to_its_defining_module(self):
        """greenworks.__all__ is sorted and each name is the object its own module defines."""
        import greenworks.dispatcher
        import greenworks.jobs
        import greenworks.runner
        import greenworks.taskmanager

        assert greenworks.__all__ == sorted(greenworks.__all__)
        assert greenworks.Runner is greenworks.runner.Runner
        assert greenworks.Dispatcher is greenworks.dispatcher.Dispatcher
        assert greenworks.TaskManager is greenworks.taskmanager.TaskManager
        assert greenworks.JobRunner is greenworks.jobs.JobRunner
        for name in greenworks.__all__:
            assert getattr(greenworks, name) is not None, name

    def test_library_logging_is_silent_without_configuration(self):
        """The greenworks logger has a NullHandler, so an unconfigured app gets no stray output."""
        import logging

        assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("greenworks").handlers)
