"""The demo, the examples and the benchmarks use Legato as a user would: through public
names only (no ``legato._x`` module, no ``_name`` from any module), and the demo's
modules import one another without a cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "legato" / "demo"


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[str, str | None]]:
    """``(module, name)`` for each import in ``path``, in functions too; relative ones
    resolved against the demo's package (name None for ``import module``)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                package = module_of(path).split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield from ((module, alias.name) for alias in node.names)


def private_legato_names(paths: Iterator[Path]) -> set[str]:
    found = set()
    for path in paths:
        for module, name in imports(path):
            if not module.startswith("legato") or module.startswith("legato.demo"):
                continue
            parts = [*module.split("."), *([name] if name else [])]
            if any(part.startswith("_") for part in parts):
                found.add(".".join(parts))
    return found


def test_the_examples_and_benchmarks_import_only_public_names_of_legato() -> None:
    scripts = [*(ROOT / "examples").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    assert private_legato_names(iter(scripts)) == set()


def test_the_demo_imports_only_public_names_of_legato() -> None:
    assert private_legato_names(DEMO.rglob("*.py")) == set()


def test_the_demo_modules_import_no_private_name_of_one_another() -> None:
    private = {
        f"{module_of(path)}: {module}.{name}"
        for path in DEMO.rglob("*.py")
        for module, name in imports(path)
        if module.startswith("legato.demo") and name is not None and name.startswith("_")
    }
    assert private == set()


def test_the_demo_modules_import_one_another_without_a_cycle() -> None:
    modules = {module_of(path): path for path in DEMO.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module] = set()
        for target, name in imports(path):
            full = f"{target}.{name}" if name else target
            for candidate in (full, target):
                if candidate in modules and candidate != module:
                    graph[module].add(candidate)
                    break
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in trail:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in done:
                visit(target, [*trail, target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert cycles == []
