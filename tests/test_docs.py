"""docs/ cannot rot: its snippets run, its names exist, it builds with -W, and Chromium renders it."""

import importlib
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import pytest
from test_readme import python_snippets, run_snippet

from greenworks import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
sys.path.insert(0, os.path.join(DOCS, "_ext"))
import check_links  # noqa: E402  (docs/_ext is not a package)

SNIPPET_TIMEOUT = 30
BUILD_TIMEOUT = 240
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_TIMEOUT = 60
SPHINX = importlib.util.find_spec("sphinx") is not None and importlib.util.find_spec("furo") is not None
needs_sphinx = pytest.mark.skipif(
    not SPHINX, reason="sphinx and furo are not installed (pip install -e '.[docs]', or make docs)"
)
#: `greenworks.module.Name` or `greenworks.module.Class.method`, as the migration page cites them.
_CITED = re.compile(r"`~?(greenworks(?:\.\w+)+)`")


def rst_files():
    found = []
    for directory, dirs, files in os.walk(DOCS):
        dirs[:] = [d for d in dirs if not d.startswith("_")]
        found += [os.path.join(directory, name) for name in files if name.endswith(".rst")]
    return sorted(found)


def doc_snippets():
    snippets = []
    for path in rst_files():
        with open(path, encoding="utf-8") as f:
            for section, line, code in python_snippets(f.read()):
                snippets.append((os.path.relpath(path, ROOT), section, line, code))
    return snippets


SNIPPETS = doc_snippets()


def resolve(dotted):
    """Import the longest module prefix of *dotted* and getattr the rest; raise if any part is missing."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(dotted)


class TestSnippets:
    def test_the_guides_have_runnable_snippets(self):
        """Every guide page but the reference ones shows its capability with at least one runnable snippet."""
        pages = {path for path, _, _, _ in SNIPPETS}
        for name in ("concepts", "runner", "dispatcher", "taskmanager", "jobs", "executor", "runutil"):
            assert "docs/guide/%s.rst" % name in pages
        assert "docs/guide/coordination.rst" in pages and "docs/guide/observability.rst" in pages

    @pytest.mark.slow
    @pytest.mark.timeout(SNIPPET_TIMEOUT + 15)
    @pytest.mark.parametrize(
        "snippet", SNIPPETS, ids=["%s:%d" % (os.path.basename(s[0]), s[2]) for s in SNIPPETS]
    )
    def test_snippet_runs(self, snippet):
        """Each ``.. code-block:: python`` of docs/ runs to completion, monkey-patched, and exits 0."""
        path, section, line, code = snippet
        proc = run_snippet(code, first_line=line)
        assert proc.returncode == 0, "%s snippet at line %d (%s) failed:\n%s" % (
            path,
            line,
            section,
            proc.stderr[-3000:],
        )


class TestNamesExist:
    def test_every_greenworks_name_the_migration_page_cites_exists(self):
        """Each `greenworks.x.Y` on the migration page imports: the mapping cannot point at nothing."""
        with open(os.path.join(DOCS, "migration.rst"), encoding="utf-8") as f:
            cited = sorted(set(_CITED.findall(f.read())))
        assert len(cited) > 40
        missing = []
        for name in cited:
            try:
                resolve(name)
            except (ImportError, AttributeError):
                missing.append(name)
        assert missing == []

    def test_the_resolver_notices_a_missing_name(self):
        """The check above is not vacuous: a name that does not exist is reported."""
        with pytest.raises(AttributeError):
            resolve("greenworks.jobs.JobRunner.schedule_job")

    def test_the_cli_page_shows_the_example_of_run_help(self):
        """docs/_run_example.py (shown on the CLI page) is the example ``greenworks run --help`` shows."""
        with open(os.path.join(DOCS, "_run_example.py"), encoding="utf-8") as f:
            assert f.read() == cli.RUN_EXAMPLE + "\n"


class TestLinkChecker:
    def test_reports_a_missing_page_and_a_missing_anchor(self, tmp_path):
        """check_links finds a link to a missing file and one to a missing #anchor; good ones pass."""
        (tmp_path / "index.html").write_text(
            '<a href="other.html#here">ok</a><a href="other.html#gone">x</a><a href="nope.html">y</a>'
            '<a href="https://example.invalid/">external</a><a href="#top" id="top">self</a>'
        )
        (tmp_path / "other.html").write_text('<h1 id="here">Here</h1>')
        broken, checked, external = check_links.broken_links(str(tmp_path))
        assert broken == [
            "index.html: other.html#gone (no such anchor)",
            "index.html: nope.html (no such file)",
        ]
        assert (checked, external) == (4, 1)


@pytest.fixture(scope="module")
def built_html():
    """docs/ built once into a temporary directory, as `make docs` does (warnings are errors)."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run(
            [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", DOCS, out],
            capture_output=True,
            text=True,
            env=env,
            timeout=BUILD_TIMEOUT,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        yield out


@needs_sphinx
@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT + 30)
class TestBuild:
    def test_builds_with_warnings_as_errors_and_no_broken_links(self, built_html):
        """The HTML builds with -W and every link inside it leads somewhere."""
        broken, checked, _ = check_links.broken_links(built_html)
        assert broken == [] and checked > 1000

    def test_interfaces_are_rendered_with_attributes_and_methods(self, built_html):
        """The contracts page documents each zope interface's attributes and methods, not just its name."""
        with open(os.path.join(built_html, "api", "interfaces.html"), encoding="utf-8") as f:
            page = f.read()
        for anchor in (
            "greenworks.interfaces.IRunner",
            "greenworks.interfaces.IRunner.apply_tasks",
            "greenworks.interfaces.IComponent.stop",
            "greenworks.interfaces.IChild.restart",
        ):
            assert 'id="%s"' % anchor in page, anchor
        assert "Extends" in page and "IComponent" in page
        from greenworks import interfaces

        missing = [name for name in interfaces.__all__ if 'id="greenworks.interfaces.%s"' % name not in page]
        assert missing == []

    def test_api_pages_come_from_the_docstrings(self, built_html):
        """An API page carries the documented class, its methods and the docstring text."""
        with open(os.path.join(built_html, "api", "dispatcher.html"), encoding="utf-8") as f:
            page = f.read()
        assert 'id="greenworks.dispatcher.Dispatcher.submit"' in page
        assert "elastic pool of worker greenlets" in page

    def test_changelog_is_included(self, built_html):
        """docs/changes.rst includes CHANGES.rst: its first release heading is on the page."""
        with open(os.path.join(ROOT, "CHANGES.rst"), encoding="utf-8") as f:
            heading = f.read().split("\n")[3].strip()
        with open(os.path.join(built_html, "changes.html"), encoding="utf-8") as f:
            assert heading in f.read()


# -- screenshots --------------------------------------------------------------


def png_pixels(data):
    """Decode an 8-bit RGB or RGBA PNG (what Chromium writes): ``(width, height, rows of pixel tuples)``."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, chunks, idat = 8, {}, b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IDAT":
            idat += body
        else:
            chunks.setdefault(kind, body)
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and color in (2, 6), "unsupported PNG: depth %d, color type %d" % (depth, color)
    channels = 3 if color == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + predictor) & 0xFF
        rows.append([tuple(line[x : x + 3]) for x in range(0, stride, channels)])
        previous = line
    return width, height, rows


def ink(rows):
    """The share of pixels that differ from the most common colour (the page's background)."""
    counts = {}
    for row in rows:
        for pixel in row:
            counts[pixel] = counts.get(pixel, 0) + 1
    background = max(counts, key=counts.get)
    total = sum(counts.values())
    return (total - counts[background]) / total, len(counts)


def chromium(*args):
    """Run headless Chromium with *args*; return the CompletedProcess."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--user-data-dir=%s" % profile,
            *args,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT)


class TestPngDecoder:
    def test_decodes_what_it_is_given(self):
        """The decoder reads back a 2x2 RGB PNG written by hand, with a Sub and an Up filter."""
        raw = b"\x01" + bytes([10, 20, 30, 5, 5, 5]) + b"\x02" + bytes([1, 1, 1, 0, 0, 0])
        ihdr = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)

        def chunk(kind, body):
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        png = (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b"")
        )
        width, height, rows = png_pixels(png)
        assert (width, height) == (2, 2)
        assert rows == [[(10, 20, 30), (15, 25, 35)], [(11, 21, 31), (15, 25, 35)]]
        assert ink(rows) == (0.5, 3)


@needs_sphinx
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT + 2 * CHROMIUM_TIMEOUT + 30)
class TestScreenshots:
    @pytest.mark.parametrize(
        ("page", "title"),
        [("index.html", "greenworks"), ("api/dispatcher.html", "greenworks.dispatcher")],
    )
    def test_page_renders_non_blank(self, built_html, tmp_path, page, title):
        """Headless Chromium renders the page: the PNG has text and colour, not one flat background."""
        url = "file://" + os.path.join(built_html, page)
        # The page Chromium loaded is ours (not an error page, which would not be blank either).
        dom = chromium("--dump-dom", url)
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert "<title>%s" % title in dom.stdout and 'class="sidebar-tree"' in dom.stdout
        shot = tmp_path / "page.png"
        proc = chromium("--screenshot=%s" % shot, "--window-size=1200,900", url)
        assert proc.returncode == 0, proc.stderr[-2000:]
        width, height, rows = png_pixels(shot.read_bytes())
        assert (width, height) == (1200, 900)
        share, colours = ink(rows)
        # Text, the sidebar and the code blocks: well over 2% of the pixels, dozens of colours.
        assert share > 0.02 and colours > 20, (share, colours)


# -- README, Makefile and pytest config (issue 22) -----------------------------


class TestWhatTheTestsNeed:
    def test_readme_says_what_is_optional_right_after_the_two_commands(self):
        """The paragraph after `make demo` / `make test` names redis-server and chromium as optional."""
        with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
            text = f.read()
        after_commands = text[text.index("make test    #") :].split("\n\n")[1]
        assert after_commands.startswith("What the tests need:")
        for words in ("redis-server", "chromium", "optional", "skip", "-rs"):
            assert words in after_commands, words

    @pytest.mark.slow
    @pytest.mark.timeout(60)
    def test_the_pytest_config_shows_each_skip_reason(self, tmp_path):
        """With the project's pytest config a skipped test is listed with its reason in the summary."""
        (tmp_path / "test_skipping.py").write_text(
            "import pytest\n\n"
            "@pytest.mark.skip(reason='redis-server is not installed')\n"
            "def test_x():\n"
            "    pass\n"
        )
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-c", os.path.join(ROOT, "tox.ini"), str(tmp_path)],
            capture_output=True,
            text=True,
            cwd=str(tmp_path),
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SKIPPED [1]" in proc.stdout and "redis-server is not installed" in proc.stdout

    @pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
    @pytest.mark.timeout(60)
    def test_make_demo_says_it_is_installing_first(self, tmp_path):
        """On first use `make demo` prints one "installing ..." line before the silent pip steps."""
        # Run as a top-level make even when the suite itself runs under `make test` (as in CI):
        # a sub-make inherits MAKELEVEL/MAKEFLAGS and prints "Entering directory" first.
        env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
        proc = subprocess.run(
            ["make", "--no-print-directory", "-n", "demo", "VENV=%s" % (tmp_path / "venv")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        commands = proc.stdout.splitlines()
        assert commands[0].startswith('echo "installing greenworks')
        # Everything else the install does is silenced (the recipe lines start with @).
        with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
            makefile = f.read()
        recipe = makefile[makefile.index("$(STAMP): setup.py") :].split("\n\n")[0].splitlines()[1:]
        assert recipe and all(line.startswith("\t@") for line in recipe)
