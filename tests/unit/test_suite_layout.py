"""The suite's own layout, which lets it run in any folder order and any test order:
every folder a package, helpers in tests/support/ imported by their full name, and
conftests that hold fixtures only.

Read from the source (ast), nothing imported: a conftest imported by name is the module
``conftest`` of whichever folder came last, which is how the suite once passed only in
one folder order.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def is_fixture(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
    return False


def public_names_besides_fixtures(tree: ast.Module) -> list[str]:
    """What a conftest defines at its top level that is neither a fixture nor private."""
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not is_fixture(node):
                found.append(node.name)
        elif isinstance(node, ast.ClassDef):
            found.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [t.id for t in targets if isinstance(t, ast.Name)]
    return [name for name in found if not name.startswith("_")]


def test_every_folder_of_the_suite_is_a_package() -> None:
    folders = {p.parent for p in SOURCES}
    assert [str(f) for f in sorted(folders) if not (f / "__init__.py").exists()] == []


def test_no_module_imports_a_conftest_or_another_test_module() -> None:
    offending = []
    for path in SOURCES:
        for name in imported_modules(ast.parse(path.read_text())):
            last = name.rsplit(".", 1)[-1]
            if last == "conftest" or last.startswith("test_"):
                offending.append(f"{path.relative_to(TESTS)}: {name}")
    assert offending == []


def test_conftests_hold_fixtures_only() -> None:
    helpers = {}
    for path in TESTS.rglob("conftest.py"):
        names = public_names_besides_fixtures(ast.parse(path.read_text()))
        if names:
            helpers[str(path.relative_to(TESTS))] = names
    assert helpers == {}, "helpers belong in tests/support/"


def test_no_module_of_the_suite_changes_sys_path() -> None:
    offending = [
        str(path.relative_to(TESTS))
        for path in SOURCES
        if "sys.path" in path.read_text() and path != Path(__file__).resolve()
    ]
    assert offending == []
