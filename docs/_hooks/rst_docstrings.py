"""Griffe extension: Legato's docstrings are written for a terminal and Sphinx habits
(``:func:`name```, a paragraph ending ``::`` before its indented example); the API
reference shows them as Markdown: a role becomes inline code, ``text::`` becomes
``text:`` (a lone ``::`` line goes), and the indented example stays a code block.

Loaded by mkdocstrings (``extensions`` in ``mkdocs.yml``); the docstrings themselves
are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|exc|obj|const):`~?(?P<name>[^`]+)`")
_LONE_LITERAL = re.compile(r"^[ \t]*::[ \t]*$\n?", re.MULTILINE)
_TRAILING_LITERAL = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)


def markdown(docstring: str) -> str:
    """A docstring's Sphinx roles and literal markers made Markdown."""
    text = _ROLE.sub(lambda m: f"`{m['name']}`", docstring)
    text = _LONE_LITERAL.sub("", text)
    return _TRAILING_LITERAL.sub(":", text)


class RstDocstrings(griffe.Extension):
    """Rewrites each object's docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
