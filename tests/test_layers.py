"""The house: packages by layer, imports flowing one way, and no room too large.

Every module's imports (top-level and inside functions) are read with ast; a module may import
its own layer and those below it, never one above.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fatnas"
# layer of each module prefix (the longest matching prefix wins); higher layers may import lower ones
LAYERS = {
    "fatnas._version": 0, "fatnas.errors": 0, "fatnas.paths": 0, "fatnas.documents": 0,
    "fatnas.report.page": 0,  # the HTML page shell: a leaf that study, scaling and the dashboard all draw with
    "fatnas.model": 1,
    "fatnas.estimate": 2,
    "fatnas.runs": 3, "fatnas.supernet": 3,
    "fatnas.search": 4,
    "fatnas.study": 5, "fatnas.scaling": 5,
    "fatnas.report": 6,
    "fatnas": 7, "fatnas.api": 7, "fatnas.cli": 7,
}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> int:
    best = max((prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")), key=len)
    return LAYERS[best]


def imported(path: Path) -> set[str]:
    """The fatnas modules `path` imports, relative imports resolved (`from . import x` counts x when it is a module)."""
    name, is_package = module_name(path), path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name.split(".")[0] == "fatnas"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "fatnas":
                continue
            out.add(target)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").is_file() or \
                        (PACKAGE.parent / sub.replace(".", "/") / "__init__.py").is_file():
                    out.add(sub)
    return out


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_says_what_it_owns_and_may_import():
    for init in sorted(PACKAGE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(PACKAGE.parent)} has no docstring"


def test_no_lower_layer_imports_a_higher_one():
    wrong = []
    for path in modules():
        name = module_name(path)
        for target in sorted(imported(path)):
            if layer(target) > layer(name):
                wrong.append(f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})")
    assert wrong == []


def test_the_layers_are_ordered_as_the_data_flows():
    flow = ["fatnas.errors", "fatnas.model.config", "fatnas.estimate.cost", "fatnas.runs.store", "fatnas.search.core",
            "fatnas.study.fidelity.jobs", "fatnas.report.dashboard.page", "fatnas.cli.search"]
    assert [layer(name) for name in flow] == sorted(layer(name) for name in flow)
    assert layer("fatnas.report.page") == 0  # the page shell is a leaf: it imports nothing of fatnas
    assert not imported(PACKAGE / "report" / "page.py")
    assert "fatnas.search.evaluate" in imported(PACKAGE / "study" / "trust.py")


def long_functions(path: Path) -> list[tuple[str, int]]:
    """(name, lines) of each function or method over MAX_FUNCTION_LINES lines (decorators and docstring included)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            length = node.end_lineno - start + 1
            if length > MAX_FUNCTION_LINES:
                out.append((f"{module_name(path)}.{node.name}", length))
    return out


def test_no_room_is_too_large():
    lines = {module_name(p): len(p.read_text().splitlines()) for p in modules()}
    assert {name: n for name, n in lines.items() if n > MAX_MODULE_LINES} == {}
    assert [f for p in modules() for f in long_functions(p)] == []
