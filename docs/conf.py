"""Sphinx configuration of the greenworks documentation: `make docs` (HTML, warnings are errors)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The package from this checkout (not an installed copy), and the local extensions.
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "_ext"))

from greenworks._version import __version__  # noqa: E402

project = "greenworks"
author = "the greenworks authors"
copyright = "the greenworks authors"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    # Our own: documents zope.interface contracts (attributes and methods), see _ext/zope_interfaces.py.
    "zope_interfaces",
]

exclude_patterns = ["_build"]
# The docstrings spell cross references as `Name`: make them links wherever the name is documented.
default_role = "py:obj"
# No intersphinx: the docs build without a network. A name that resolves nowhere stays plain text.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "both"

html_theme = "furo"
html_title = "greenworks %s" % release
html_static_path = []
html_show_sourcelink = False
