"""README.rst cannot rot: every Python snippet in it runs, and the sections it promises are there."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.rst")
SNIPPET_TIMEOUT = 30
#: The sections that must each show their capability with a runnable snippet.
CAPABILITIES = (
    "Context and clock",
    "Runner",
    "Dispatcher",
    "TaskManager",
    "JobRunner",
    "Schedules",
    "Job stores",
    "runutil",
    "GreenExecutor",
    "Task groups",
    "Supervisor trees",
    "Status page",
    "Watching it run",
)
#: Sections whose snippets need a redis-server: shown as literal blocks, not run.
REDIS_SECTIONS = ("Durable work across hosts", "Scaling out")
HOOKS = (
    "post_worker_init = greenworks.gunicorn.post_worker_init",
    "worker_int = greenworks.gunicorn.worker_int",
    "worker_exit = greenworks.gunicorn.worker_exit",
    "child_exit = greenworks.gunicorn.child_exit",
)
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1+\s*$")


def read_readme():
    with open(README, encoding="utf-8") as f:
        return f.read()


def python_snippets(text):
    """Return ``(section title, first line number, code)`` for each ``.. code-block:: python``."""
    lines = text.splitlines()
    snippets = []
    section = None
    index = 0
    while index < len(lines):
        line = lines[index]
        underline = lines[index + 1].rstrip() if index + 1 < len(lines) else ""
        if line.strip() and _UNDERLINE.match(underline) and len(underline) >= len(line.rstrip()):
            section = line.strip()
        if line.strip() == ".. code-block:: python":
            index += 1
            # Directive options (":linenos:") and the blank line before the body.
            while index < len(lines) and (not lines[index].strip() or lines[index].strip().startswith(":")):
                index += 1
            start = index
            while index < len(lines) and (not lines[index].strip() or lines[index].startswith((" ", "\t"))):
                index += 1
            body = textwrap.dedent("\n".join(lines[start:index])).strip("\n")
            snippets.append((section, start + 1, body))
            continue
        index += 1
    return snippets


def run_snippet(code, first_line=1):
    """Run *code* in a fresh monkey-patched interpreter; line numbers in errors are README lines."""
    padding = "\n" * max(0, first_line - 2)
    source = "from gevent import monkey; monkey.patch_all()\n" + padding + code + "\n"
    return subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=SNIPPET_TIMEOUT, cwd=ROOT
    )


def snippet_id(snippet):
    section, line, _ = snippet
    return "line%d-%s" % (line, re.sub(r"[^a-z]+", "-", (section or "top").lower()).strip("-"))


SNIPPETS = python_snippets(read_readme())


class TestExtraction:
    def test_finds_python_blocks_with_their_section_and_line(self):
        """Python code blocks are extracted, dedented, with their section title and first line."""
        text = "Title\n=====\n\n.. code-block:: console\n\n    make x\n\nPart\n----\n\n" + (
            ".. code-block:: python\n\n    x = 1\n\n    assert x == 1\n\nAfter.\n"
        )
        assert python_snippets(text) == [("Part", 13, "x = 1\n\nassert x == 1")]

    def test_a_failing_claim_fails_the_run(self):
        """The harness reports a snippet whose assertion is false, with the README line number."""
        proc = run_snippet("x = 1\nassert x == 2", first_line=40)
        assert proc.returncode != 0
        assert "line 41" in proc.stderr and "AssertionError" in proc.stderr

    def test_snippets_run_monkey_patched(self):
        """Snippets run in an interpreter whose socket module gevent has patched."""
        proc = run_snippet("import gevent.monkey, socket\nassert gevent.monkey.is_module_patched('socket')")
        assert proc.returncode == 0, proc.stderr


class TestReadmeSnippets:
    @pytest.mark.slow
    @pytest.mark.timeout(SNIPPET_TIMEOUT + 15)
    @pytest.mark.parametrize("snippet", SNIPPETS, ids=[snippet_id(s) for s in SNIPPETS])
    def test_snippet_runs(self, snippet):
        """Each Python snippet of README.rst runs to completion in a fresh interpreter and exits 0."""
        section, line, code = snippet
        proc = run_snippet(code, first_line=line)
        assert proc.returncode == 0, "README.rst snippet at line %d (%s) failed:\n%s" % (
            line,
            section,
            proc.stderr[-3000:],
        )

    def test_every_capability_has_a_snippet_that_checks_itself(self):
        """Each capability section has a Python snippet, and every snippet asserts its claims."""
        sections = [section for section, _, _ in SNIPPETS]
        for capability in CAPABILITIES:
            assert any(s and s.startswith(capability) for s in sections), capability
        for title in REDIS_SECTIONS:
            assert title in read_readme(), title
        for _section, line, code in SNIPPETS:
            assert re.search(r"^\s*assert ", code, flags=re.M), "snippet at line %d does not assert" % line


class TestReadmeContent:
    def test_opens_with_the_two_commands(self):
        """The first block of the README is `make demo` then `make test`."""
        text = read_readme()
        first_block = text[text.index(".. code-block::") :].split("\n\n")[1]
        assert [line.split("#")[0].strip() for line in first_block.splitlines()] == ["make demo", "make test"]

    def test_gunicorn_section_names_the_hooks(self):
        """The "Running under gunicorn" section lists the three gunicorn hook settings."""
        text = read_readme()
        section = text[text.index("Running under gunicorn\n---") :]
        section = section[: section.index("\nHow it compares\n")]
        for hook in HOOKS:
            assert hook in section
        import greenworks.gunicorn

        for name in re.findall(r"greenworks\.gunicorn\.(\w+)", section):
            assert callable(getattr(greenworks.gunicorn, name)), name
        assert callable(greenworks.gunicorn.runtime.add)

    def test_compares_with_the_alternatives_and_points_at_the_interfaces(self):
        """The comparison names gevent.pool, APScheduler and Celery beat; the contracts' file is named."""
        text = read_readme()
        table = text[text.index("How it compares") : text.index("Where the contracts live")]
        for name in ("gevent.pool.Pool", "APScheduler", "Celery beat", "Better choice when"):
            assert name in table
        assert "greenworks/interfaces.py" in text
