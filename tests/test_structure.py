"""The architecture, held by a test as ruff and mypy hold style and types.

``workers/`` has three parts (docs/DESIGN.md, "Layout"). Imports point one way:
``integration`` -> ``ops`` -> ``core`` -> ``policies``; the core imports no
Celery or kombu, and no module reaches back up. Every import counts, also
those made inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PACKAGE = ROOT / "workers"
# Part -> the parts of workers/ it may import (besides itself).
MAY_IMPORT = {
    "core": set(),
    "ops": {"core"},
    "integration": {"core", "ops"},
}
CELERY_SIDE = ("celery", "kombu", "billiard")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path.parent)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # "from workers.core import store" imports the module workers.core.store
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {
        name: {imported for imported in _imports(path) if imported in modules and imported != name}
        for name, path in modules.items()
    }


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else None


def test_the_core_imports_neither_celery_nor_kombu() -> None:
    offenders = [
        f"{_module_name(path)} imports {imported}"
        for path in (PACKAGE / "core").rglob("*.py")
        for imported in sorted(_imports(path))
        if imported.split(".")[0] in CELERY_SIDE
    ]
    assert offenders == []


def test_imports_point_one_way_between_the_parts() -> None:
    offenders = []
    for module, imported in _graph().items():
        part = _part(module)
        if part is None:
            continue  # workers/__init__.py: the public surface re-exports every part
        for target in sorted(imported):
            target_part = _part(target)
            if target == "workers" or (target_part not in (part, None, *MAY_IMPORT[part])):
                offenders.append(f"{module} ({part}) imports {target}")
    assert offenders == []


def test_no_import_circles() -> None:
    graph = _graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_package_exports_each_public_name_once_and_lazily() -> None:
    import workers

    assert sorted(workers.__all__) == sorted(workers._EXPORTS)
    for name in workers.__all__:
        assert getattr(workers, name) is not None, name


def test_retryctl_starts_without_importing_celery() -> None:
    """Commands other than ``kill`` need no Celery: importing it cost a second of
    every ``retryctl list`` (issue 14's 2 s bar at 100,000 jobs)."""
    import subprocess
    import sys

    probe = "import sys, workers.ops.cli; print(sorted(m for m in sys.modules " \
        "if m.split('.')[0] in ('celery', 'kombu')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()  # fmt: skip
    assert out == "[]", f"retryctl imports {out}"
