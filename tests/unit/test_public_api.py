"""The public API is what ``legato.__all__`` lists: curated, sorted, complete (as httpx)."""

from __future__ import annotations

import types

import legato


def public_names() -> set[str]:
    """Every name ``legato/__init__`` binds for users: not private, not a submodule."""
    return {
        name
        for name, value in vars(legato).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_all_is_sorted() -> None:
    assert legato.__all__ == sorted(legato.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(legato.__all__) == len(set(legato.__all__))


def test_every_name_in_all_exists() -> None:
    missing = [name for name in legato.__all__ if not hasattr(legato, name)]
    assert missing == []


def test_every_public_name_is_in_all() -> None:
    listed = set(legato.__all__) - {"__version__"}
    assert public_names() == listed


def test_all_lists_no_module() -> None:
    assert not [n for n in legato.__all__ if isinstance(getattr(legato, n), types.ModuleType)]


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from legato import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(legato.__all__)


def test_the_version_is_exported() -> None:
    assert "__version__" in legato.__all__
    assert isinstance(legato.__version__, str) and legato.__version__


def test_every_exported_error_is_a_legato_error() -> None:
    errors = [
        getattr(legato, n)
        for n in legato.__all__
        if isinstance(getattr(legato, n), type) and issubclass(getattr(legato, n), BaseException)
    ]
    assert errors
    assert all(issubclass(e, legato.LegatoError) for e in errors)
