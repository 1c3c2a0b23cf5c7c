"""Checks on local model folders: every pretrained part is a folder the user names, never a download."""

from __future__ import annotations

import os
from pathlib import Path

from mmgt.errors import ModelFolderError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def require_pipeline_folder(path: str | os.PathLike, what: str = "model") -> Path:
    """A diffusers-style pipeline folder (``model_index.json`` + one subfolder per component) or a clear error."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"{what} folder {path} not found")
    index = path / "model_index.json"
    if not index.is_file():
        raise ModelFolderError(f"{what} folder {path}: no model_index.json (not a saved mmgt pipeline)")
    return path


def missing_parts(folder: str | os.PathLike, needs_weights: bool = True) -> list[str]:
    """What a diffusers/transformers component folder lacks: ``config.json`` and (optionally) a weight file."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} (folder not found)"]
    missing = []
    if not any((folder / name).is_file() for name in ("config.json", "scheduler_config.json")):
        missing.append(f"{folder}/config.json")
    if needs_weights and not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir() if p.is_file()):
        missing.append(f"{folder}/*.safetensors (no weight file)")
    return missing
