"""
A Sphinx extension that documents ``zope.interface`` contracts readably.

autodoc sees an ``Interface`` as an instance of ``InterfaceClass``, not as a
class, so it shows neither its attributes nor its methods. The directive::

    .. autointerfaces:: greenworks.interfaces

documents every interface in the module's ``__all__``, in the order the
module defines them (so related contracts stay together), as a class: its docstring, the interfaces it extends, then each ``Attribute`` and
each method in the order they are declared, methods with the signature
zope.interface records (interface methods are written without ``self``).
Use ``:only: IRunner IDispatcher`` to pick some.
"""

import importlib
import inspect

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles
from zope.interface.interface import InterfaceClass, Method


def _indent(text, prefix="   "):
    return [prefix + line if line else "" for line in text.splitlines()]


def interface_lines(name, iface):
    """The reST lines documenting *iface*, named *name* in its module."""
    signature_bases = [base.getName() for base in iface.__bases__ if base.getName() != "Interface"]
    lines = [".. py:class:: %s" % name, ""]
    if signature_bases:
        lines += ["   Extends %s." % ", ".join("`%s`" % base for base in signature_bases), ""]
    lines += _indent(inspect.cleandoc(iface.__doc__ or "")) + [""]
    for member_name, member in iface.namesAndDescriptions(all=False):
        doc = inspect.cleandoc(member.getDoc() or "")
        if isinstance(member, Method):
            lines += ["   .. py:method:: %s%s" % (member_name, member.getSignatureString()), ""]
        else:
            lines += ["   .. py:attribute:: %s" % member_name, ""]
        lines += _indent(doc, "      ") + [""]
    return lines


class AutoInterfaces(SphinxDirective):
    required_arguments = 1
    option_spec = {"only": directives.unchanged}

    def run(self):
        module_name = self.arguments[0]
        module = importlib.import_module(module_name)
        public = set(module.__all__)
        names = self.options.get("only", "").split() or [name for name in vars(module) if name in public]
        lines = [".. py:currentmodule:: %s" % module_name, ""]
        for name in names:
            iface = getattr(module, name)
            if not isinstance(iface, InterfaceClass):
                raise self.error("%s.%s is not a zope.interface Interface" % (module_name, name))
            lines += interface_lines(name, iface)
        node = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source=module.__file__), node)
        return node.children


def setup(app):
    app.add_directive("autointerfaces", AutoInterfaces)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
