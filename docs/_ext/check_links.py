"""
Check every link inside a built HTML tree: ``python docs/_ext/check_links.py docs/_build/html``.

Sphinx's own ``linkcheck`` builder checks external links over the network,
which the build machines do not have; this checks the links that must work
offline: each ``href``/``src`` that is not external must name a file of the
tree, and its ``#fragment`` an ``id`` (or ``<a name>``) in that file.
External links (``http:``, ``https:``, ``mailto:`` ...) are counted, not
fetched. Exit status 1 lists every broken link as ``page: link``.
"""

import os
import sys
import urllib.parse
from html.parser import HTMLParser

__all__ = ["broken_links", "main"]


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if values.get(key):
                self.ids.add(values[key] or "")
        for key in ("href", "src"):
            if values.get(key) is not None and not (tag == "link" and values.get("rel") == "preconnect"):
                self.links.append(values[key] or "")


def _parse(path: str) -> _Page:
    page = _Page()
    with open(path, encoding="utf-8") as f:
        page.feed(f.read())
    return page


def broken_links(root: str) -> tuple[list[str], int, int]:
    """Return ``(broken, checked, external)`` for the HTML tree at *root*."""
    pages: dict[str, _Page] = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if name.endswith(".html"):
                path = os.path.normpath(os.path.join(directory, name))
                pages[path] = _parse(path)
    broken, checked, external = [], 0, 0
    for path, page in sorted(pages.items()):
        for link in page.links:
            parts = urllib.parse.urlsplit(link)
            if parts.scheme or parts.netloc:
                external += 1
                continue
            checked += 1
            target = path
            if parts.path:
                target = os.path.normpath(os.path.join(os.path.dirname(path), urllib.parse.unquote(parts.path)))
                if os.path.isdir(target):
                    target = os.path.join(target, "index.html")
            if not os.path.exists(target):
                broken.append("%s: %s (no such file)" % (os.path.relpath(path, root), link))
                continue
            fragment = urllib.parse.unquote(parts.fragment)
            if fragment and target.endswith(".html"):
                ids = pages[target].ids if target in pages else _parse(target).ids
                if fragment not in ids:
                    broken.append("%s: %s (no such anchor)" % (os.path.relpath(path, root), link))
    return broken, checked, external


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print("usage: check_links.py BUILT_HTML_DIRECTORY", file=sys.stderr)
        return 2
    broken, checked, external = broken_links(argv[0])
    for line in broken:
        print("broken link: %s" % line)
    print(
        "check_links: %d internal links checked, %d broken; %d external links not fetched"
        % (checked, len(broken), external)
    )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
