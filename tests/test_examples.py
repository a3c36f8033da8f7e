"""Every numbered example runs, exits 0 within its time box and prints what its docstring promises."""

import ast
import os
import re
import subprocess
import sys

import pytest

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
EXAMPLE_TIME_BOX = 5.0
# Interpreter start-up and imports are not the example's own time.
START_UP_ALLOWANCE = 10.0


def example_scripts():
    if not os.path.isdir(EXAMPLES_DIR):
        return []
    return sorted(name for name in os.listdir(EXAMPLES_DIR) if re.match(r"\d\d_.*\.py$", name))


def expected_lines(path):
    """Return the lines of the ``Expected output::`` block of the module docstring at *path*."""
    with open(path, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    lines = doc.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == "Expected output::":
            block = []
            for body in lines[index + 1 :]:
                if body.strip() and not body.startswith((" ", "\t")):
                    break
                if body.strip():
                    block.append(body.strip())
            return block
    return []


def line_pattern(expected):
    return re.compile("^" + ".*".join(re.escape(part) for part in expected.split("...")) + "$")


def assert_in_order(expected, output_lines):
    position = 0
    for want in expected:
        pattern = line_pattern(want)
        while position < len(output_lines) and not pattern.match(output_lines[position].strip()):
            position += 1
        assert position < len(output_lines), "expected line %r not found (in order) in:\n%s" % (
            want,
            "\n".join(output_lines),
        )
        position += 1


class TestExpectedOutputMatcher:
    def test_ellipsis_matches_any_text_and_order_is_enforced(self):
        """The matcher accepts wildcards and rejects lines that appear out of order."""
        assert_in_order(["a ... c", "done"], ["x", "a b c", "done"])
        with pytest.raises(AssertionError):
            assert_in_order(["done", "a ... c"], ["a b c", "done"])


@pytest.mark.parametrize("script", example_scripts())
@pytest.mark.timeout(EXAMPLE_TIME_BOX + START_UP_ALLOWANCE + 5)
def test_example(script):
    """Each example exits 0 in time and prints its documented output."""
    path = os.path.join(EXAMPLES_DIR, script)
    expected = expected_lines(path)
    assert expected, "%s has no 'Expected output::' block in its docstring" % script
    proc = subprocess.run(
        [sys.executable, path],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIME_BOX + START_UP_ALLOWANCE,
        cwd=EXAMPLES_DIR,
    )
    assert proc.returncode == 0, "%s exited %s\nstdout:\n%s\nstderr:\n%s" % (
        script,
        proc.returncode,
        proc.stdout,
        proc.stderr,
    )
    assert_in_order(expected, proc.stdout.splitlines())
