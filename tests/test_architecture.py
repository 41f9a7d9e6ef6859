"""The import layers of docs/architecture.md hold for the code: no unit imports a unit of its own layer or above."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import robustness

ROOT = Path(robustness.__file__).parent
DOC = ROOT.parent / "docs" / "architecture.md"


def declared_layers() -> dict[str, int]:
    """``{unit: layer}`` from the doc's table (rows ``| n | `a` `b` |``)."""
    layers = {}
    for number, units in re.findall(r"^\|\s*(\d+)\s*\|(.*)\|\s*$", DOC.read_text(), re.M):
        for unit in re.findall(r"`([\w_]+)`", units):
            layers[unit] = int(number)
    return layers


def _imported(node: ast.AST, package: list[str]) -> list[str]:
    """The units of the package one node imports: a relative ``from . import``, an absolute ``import
    robustness.x`` or ``from robustness(.x) import``, or ``importlib.import_module("robustness.x")`` (or a
    relative name with a package) with constant arguments; ``[]`` for anything else."""
    if isinstance(node, ast.ImportFrom) and node.level:
        base = package[: len(package) - node.level + 1]
        target = [*base, *(node.module.split(".") if node.module else [])]
        return target[:1] or [a.name for a in node.names if a.name != "__version__"]
    if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "robustness":
        target = node.module.split(".")[1:2]
        return target or [a.name for a in node.names if a.name != "__version__"]
    if isinstance(node, ast.Import):
        return [a.name.split(".")[1] for a in node.names if a.name.startswith("robustness.")]
    if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
        name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else ""
        if isinstance(name, str) and name.startswith("."):
            anchor = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else ""
            name = f"{anchor}{name}"
        parts = name.split(".")
        return parts[1:2] if parts[0] == "robustness" else []
    return []


def imports() -> dict[str, set[str]]:
    """``{unit: units it imports}`` from every module's imports (in functions too): relative, absolute and
    through :func:`importlib.import_module`."""
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        unit, package = parts[0], list(parts[:-1])
        if unit == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            found.setdefault(unit, set()).update(n for n in _imported(node, package) if n != unit)
    return found


def test_absolute_and_importlib_imports_are_seen() -> None:
    package = ["scoring"]
    seen = [_imported(ast.parse(code).body[0].value if code.startswith("importlib") else ast.parse(code).body[0],
                      package) for code in ("from robustness.cli import main", "import robustness.cli.options",
                                            "from robustness import cli", "importlib.import_module('robustness.cli')",
                                            "from ..cli import main", "from . import tables")]
    assert seen == [["cli"], ["cli"], ["cli"], ["cli"], ["cli"], ["scoring"]]


def test_every_unit_is_in_the_table() -> None:
    units = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in ROOT.iterdir()
             if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file())}
    assert units - {"__init__"} == set(declared_layers())


def test_imports_only_go_down_the_layers() -> None:
    layers = declared_layers()
    upward = sorted(f"{unit} (layer {layers[unit]}) imports {target} (layer {layers[target]})"
                    for unit, targets in imports().items() for target in targets if layers[target] >= layers[unit])
    assert not upward, upward


def test_each_wing_states_its_public_names() -> None:
    for init in ROOT.glob("*/__init__.py"):
        tree = ast.parse(init.read_text())
        names = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name)]
        assert "__all__" in names, f"{init.parent.name}/__init__.py has no __all__"
        module = __import__(f"robustness.{init.parent.name}", fromlist=["*"])
        assert len(module.__all__) == len(set(module.__all__)), init
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{init.parent.name}/__init__.py lists names it does not define: {missing}"


def test_no_module_level_aliases() -> None:
    """No ``__getattr__`` that resolves names of other modules on first use."""
    offenders = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if any(
        isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in ast.parse(p.read_text()).body)]
    assert not offenders
