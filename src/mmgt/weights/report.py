"""What ``mmgt weights check`` reports, and the file-level checks every part shares.

Only config files and file headers are read: no weights are loaded and nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mmgt.errors import ModelFolderError

STATUSES = ("ok", "mismatched", "incomplete", "missing")  # in order of severity


@dataclass
class PartStatus:
    """The verdict on one part of a folder.

    Attributes:
        name: the part (``unet``, ``stage2``, ``encoders/stage2``, ...).
        path: where it was looked for.
        status: ``ok``, ``missing``, ``incomplete`` (files absent, empty or truncated) or ``mismatched`` (config
            values that do not fit together).
        detail: what is wrong, or a one-line description when ok.
        source: the public repository of a base part (None for trained-model parts).
        required: False for optional parts; an absent optional part does not fail the check.
    """

    name: str
    path: str
    status: str
    detail: str = ""
    source: str | None = None
    required: bool = True

    @property
    def acceptable(self) -> bool:
        """ok, or an optional part that is simply absent."""
        return self.status == "ok" or (not self.required and self.status == "missing")


class Part:
    """Collects the problems found for one part; ``result()`` keeps the most severe status."""

    def __init__(self, name: str, path: Path, required: bool = True, source: str | None = None):
        self.name, self.path, self.required, self.source = name, path, required, source
        self.problems: list[tuple[str, str]] = []
        self.info = ""

    def add(self, status: str, message: str) -> None:
        self.problems.append((status, message))

    def result(self) -> PartStatus:
        status = max((s for s, _ in self.problems), key=STATUSES.index, default="ok")
        detail = "; ".join(m for _, m in self.problems) or self.info
        return PartStatus(self.name, str(self.path), status, detail, self.source, self.required)


def summarize(parts: list[PartStatus]) -> str:
    """One line: ``all 6 required parts ok`` or ``3 of 7 parts missing: unet, vae, wavlm``."""
    failing = [p for p in parts if not p.acceptable]
    if not failing:
        absent = [p.name for p in parts if not p.required and p.status == "missing"]
        extra = f" (optional, not present: {', '.join(absent)})" if absent else ""
        return f"all {sum(p.required for p in parts)} required parts ok{extra}"
    groups = [(s, names) for s in reversed(STATUSES[1:]) if (names := [p.name for p in failing if p.status == s])]
    head = f"{len(failing)} of {len(parts)} parts"
    if len(groups) == 1:
        return f"{head} {groups[0][0]}: {', '.join(groups[0][1])}"
    return f"{head} not ready: " + "; ".join(f"{len(names)} {s}: {', '.join(names)}" for s, names in groups)


def existing_folder(folder: str | os.PathLike) -> Path:
    root = Path(folder)
    if not root.is_dir():
        raise ModelFolderError(f"weights folder {root} not found" if not root.exists() else f"{root} is not a folder")
    return root


def weight_files(kind: str) -> tuple[str, ...]:
    """File names the loader of a part reads, in its order of preference (defined next to each loader)."""
    if kind == "speech":
        from mmgt.audio.encoders import WEIGHT_FILES

        return WEIGHT_FILES
    if kind == "controlnet":
        from mmgt.models.pose_guider import CONTROLNET_WEIGHTS

        return (CONTROLNET_WEIGHTS,)
    from mmgt.models.stage2_presets import _WEIGHTS

    return _WEIGHTS[kind]


def check_files(part: Part, weights: tuple[str, ...], config: str = "config.json") -> bool:
    """Folder, config file and the first present weights file; returns whether the config file is there."""
    folder = part.path
    if not folder.is_dir():
        part.add("missing", "folder not found")
        return False
    if not (folder / config).is_file():
        hint = ""
        if (folder / folder.name / config).is_file():  # e.g. `--include "unet/*" --local-dir base/unet`
            hint = f": it is one level down, in {folder / folder.name}; move that folder's contents up"
        elif (folder / "model_index.json").is_file():
            hint = ": this is a whole pipeline (model_index.json); use its subfolder"
        part.add("incomplete", f"no {config}{hint}")
        return False
    if weights:
        present = [name for name in weights if (folder / name).is_file()]
        if not present:
            others = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
            found = f" (found only {', '.join(others)})" if others else ""
            part.add("incomplete", f"no weights: expected {' or '.join(weights)}{found}")
        elif problem := weights_problem(folder / present[0]):
            part.add("incomplete", problem)
    return True


def weights_problem(path: Path) -> str | None:
    """Cheap integrity check: empty files, Git LFS pointers, truncated safetensors, missing shards."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if size == 0 or head.startswith(b"version "):
            return f"{path.name} is {'empty' if size == 0 else 'a Git LFS pointer (run git lfs pull)'}"
        if path.name.endswith(".index.json"):
            try:
                shards = set(json.loads(head + f.read())["weight_map"].values())
            except (ValueError, KeyError, TypeError):
                return f"{path.name} is not a shard index"
            missing = sorted(s for s in shards if not (path.parent / s).is_file())
            return f"shards missing: {', '.join(missing)}" if missing else None
        if path.suffix == ".safetensors":
            length = int.from_bytes(head, "little")
            try:
                header = json.loads(f.read(length)) if 8 + length <= size else None
                end = (
                    8
                    + length
                    + max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                return f"{path.name} is not a safetensors file"
            if end != size:
                return f"{path.name} is truncated or damaged ({size:,} bytes, its header describes {end:,})"
    return None


def read_json(part: Part, path: Path):
    """Parsed JSON, or None with an ``incomplete`` problem recorded."""
    if not path.is_file():
        part.add("incomplete", f"no {path.name}")
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        part.add("incomplete", f"{path.name} is not valid JSON ({e})")
        return None


def fmt(value) -> str:
    return " x ".join(map(str, value)) if isinstance(value, tuple) else str(value)
