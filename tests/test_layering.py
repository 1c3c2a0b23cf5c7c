"""Imports only go downward through the layers of STYLE §4.3; this parses every module and checks each edge."""

from __future__ import annotations

import ast
from pathlib import Path

import mmgt

ROOT = Path(mmgt.__file__).parent

# layer -> mmgt layers it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "constants": set(),
    "errors": set(),
    "contracts": {"constants", "errors"},
    "config": {"errors"},  # ConfigError is an MmgtError
    "utils": {"constants", "contracts", "errors"},
    "audio": {"constants", "contracts", "errors", "utils"},
    "pose": {"constants", "contracts", "errors", "utils"},
    "models": {"constants", "contracts", "errors", "utils"},
    "diffusion": {"constants", "contracts", "errors", "utils"},
    "data": {"constants", "contracts", "errors", "utils", "audio", "pose"},
    "evaluation": {"constants", "contracts", "errors", "utils", "audio", "pose"},
    "pipelines": {"constants", "contracts", "errors", "utils", "audio", "pose", "models", "diffusion"},
    "weights": {"constants", "contracts", "errors", "utils", "audio", "pose", "models", "diffusion", "pipelines"},
    "training": {
        "constants",
        "contracts",
        "errors",
        "utils",
        "audio",
        "pose",
        "models",
        "diffusion",
        "data",
        "evaluation",
        "config",
        "pipelines",
    },
}
TOP = {"cli", "app", "__main__", "__init__"}  # may import anything; nothing imports them


def _layer(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmgt.") and node.level == 0:
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mmgt."))
    return found


def test_imports_go_downward():
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        layer = _layer(path)
        for target in _imports(path) - {layer}:
            if target in TOP and layer not in TOP:
                violations.append(f"{path.relative_to(ROOT)} imports top-level {target}")
            elif layer not in TOP and target not in ALLOWED.get(layer, set()):
                violations.append(f"{path.relative_to(ROOT)} ({layer}) imports {target}")
    assert not violations, "\n".join(violations)


def test_every_package_has_a_layer():
    for path in ROOT.iterdir():
        if path.name.startswith("_") or path.suffix not in {".py", ""} or path.name == "assets":
            continue
        name = path.name.removesuffix(".py")
        assert name in ALLOWED or name in TOP, f"{name} has no layer in tests/test_layering.py"
