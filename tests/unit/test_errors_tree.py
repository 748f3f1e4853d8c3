"""Every ``LegatoError`` lives in ``legato._errors``, is drawn in its tree, and is
exported from ``legato`` when users can meet it."""

from __future__ import annotations

import importlib
import pkgutil

import legato
from legato import _errors

INTERNAL = {"BadRequest"}  # raised inside the HTTP edge only; callers see a 400


def every_error() -> set[type[BaseException]]:
    for info in pkgutil.walk_packages(legato.__path__, "legato."):
        importlib.import_module(info.name)
    found: set[type[BaseException]] = set()
    todo: list[type[BaseException]] = [legato.LegatoError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_legato_error_is_defined_in_the_errors_module() -> None:
    elsewhere = sorted(
        f"{c.__module__}.{c.__name__}" for c in every_error() if c.__module__ != "legato._errors"
    )
    assert elsewhere == []


def test_the_drawn_tree_names_every_error_under_its_parent() -> None:
    doc = _errors.__doc__ or ""
    tree = doc[doc.index("::\n") + 3 : doc.index("``Failure``")]
    lines = [line for line in tree.splitlines() if line.strip()]
    names = {
        line.split("── ")[-1].split()[0] if "── " in line else line.split()[0] for line in lines
    }
    assert names == {c.__name__ for c in every_error()}
    depth = {}
    for line in lines:
        name = line.split("── ")[-1].split()[0] if "── " in line else line.split()[0]
        depth[name] = (len(line) - len(line.lstrip(" │├└─"))) // 4
    for cls in every_error() - {legato.LegatoError}:
        parent = next(b for b in cls.__bases__ if issubclass(b, legato.LegatoError))
        assert depth[cls.__name__] == depth[parent.__name__] + 1, cls.__name__


def test_every_error_a_user_can_meet_is_exported() -> None:
    missing = sorted(c.__name__ for c in every_error() if c.__name__ not in legato.__all__)
    assert missing == sorted(INTERNAL)
