"""The distributions `python -m build` makes: what a user installs is typed, versioned and complete."""

import email.parser
import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from greenworks._version import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# An isolated build installs setuptools into a fresh environment first: generous on a busy machine.
BUILD_TIMEOUT = 240

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(BUILD_TIMEOUT + 30),
    pytest.mark.skipif(
        importlib.util.find_spec("build") is None,
        reason="the 'build' package is not installed (pip install -e '.[dist]', or make dist)",
    ),
]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """Build the sdist and the wheel once (the wheel from the sdist, as `python -m build` does)."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), ROOT],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("greenworks-*.whl")
    (sdist,) = out.glob("greenworks-*.tar.gz")
    return wheel, sdist


def wheel_metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        name = "greenworks-%s.dist-info/METADATA" % __version__
        return email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))


class TestWheel:
    def test_named_after_the_one_version(self, dist):
        """The wheel's file name and METADATA carry the version of greenworks/_version.py."""
        wheel, sdist = dist
        assert wheel.name == "greenworks-%s-py3-none-any.whl" % __version__
        assert sdist.name == "greenworks-%s.tar.gz" % __version__
        assert wheel_metadata(wheel)["Version"] == __version__

    def test_ships_py_typed_and_every_module(self, dist):
        """greenworks/py.typed is in the wheel (PEP 561), with every module of the package."""
        wheel, _ = dist
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
        assert "greenworks/py.typed" in names
        for module in (
            "__init__.py",
            "cli.py",
            "_status_command.py",
            "interfaces.py",
            "coordination/__init__.py",
        ):
            assert "greenworks/" + module in names
        assert not [name for name in names if name.startswith(("tests/", "docs/"))]

    def test_metadata_declares_what_is_supported(self, dist):
        """Python 3.10 to 3.13, typed, the console script and the docs/dist extras are declared."""
        wheel, _ = dist
        metadata = wheel_metadata(wheel)
        assert metadata["Requires-Python"] == ">=3.10"
        classifiers = metadata.get_all("Classifier")
        for minor in (10, 11, 12, 13):
            assert "Programming Language :: Python :: 3.%d" % minor in classifiers
        assert "Typing :: Typed" in classifiers
        assert {"docs", "dist", "test"} <= set(metadata.get_all("Provides-Extra"))
        with zipfile.ZipFile(wheel) as archive:
            entry_points = archive.read("greenworks-%s.dist-info/entry_points.txt" % __version__).decode()
        assert "greenworks = greenworks.cli:main" in entry_points


class TestSdist:
    def test_carries_the_sources_of_docs_tests_and_checks(self, dist):
        """The sdist has py.typed, mypy.ini, pyproject.toml, LICENSE, the changelog, docs and tests."""
        _, sdist = dist
        top = "greenworks-%s/" % __version__
        with tarfile.open(sdist) as archive:
            names = {name[len(top) :] for name in archive.getnames() if name.startswith(top)}
        for path in (
            "greenworks/py.typed",
            "mypy.ini",
            "pyproject.toml",
            "setup.py",
            "CHANGES.rst",
            "README.rst",
            "LICENSE",
            "docs/conf.py",
            "docs/index.rst",
            "docs/changes.rst",
            "tests/test_cli.py",
        ):
            assert path in names, path
        assert not [name for name in names if name.startswith("docs/_build/")]
