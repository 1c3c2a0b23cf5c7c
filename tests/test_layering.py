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
TOP = {"cli", "app", "__main__", "__init__"}  # nothing below imports them
UPWARD = {"app": {"cli"}}  # the app is a library the CLI starts: it never reaches back into the CLI


def _layer(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmgt.") and node.level == 0:
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mmgt."))
    return found


def _violations(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        layer, name = _layer(path, root), path.relative_to(root)
        for target in _imports(path) - {layer}:
            if target in UPWARD.get(layer, set()):
                found.append(f"{name} ({layer}) imports {target}")
            elif target in TOP and layer not in TOP:
                found.append(f"{name} imports top-level {target}")
            elif layer not in TOP and target not in ALLOWED.get(layer, set()):
                found.append(f"{name} ({layer}) imports {target}")
    return found


def test_imports_go_downward():
    violations = _violations(ROOT)
    assert not violations, "\n".join(violations)


def test_the_check_catches_upward_imports(tmp_path):
    for rel, source in {
        "app/generate.py": "from mmgt.cli.pose import render_outputs\n",  # the app reaching into the CLI
        "cli/app.py": "from mmgt.app.web import build_app\n",  # allowed: the CLI starts the app
        "pose/masks.py": "import mmgt.models.pose_guider\n",  # a layer-2 sibling
        "utils/files.py": "def f():\n    from mmgt.pipelines.reference import load_image\n",  # upward, in a function
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(source)
    assert _violations(tmp_path) == [
        "app/generate.py (app) imports cli",
        "pose/masks.py (pose) imports models",
        "utils/files.py (utils) imports pipelines",
    ]


def test_every_package_has_a_layer():
    for path in ROOT.iterdir():
        if path.name.startswith("_") or path.suffix not in {".py", ""} or path.name == "assets":
            continue
        name = path.name.removesuffix(".py")
        assert name in ALLOWED or name in TOP, f"{name} has no layer in tests/test_layering.py"
