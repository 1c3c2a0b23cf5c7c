"""Local weight folders: what ``mmgt weights check`` reads (base-weights folders and trained model folders).

Only config files and file headers are read: no weights are loaded and nothing is downloaded. docs/weights.md explains
how to assemble a base folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmgt.weights.base import BASE_LAYOUT, BasePart, base_folders, check_base_folder
from mmgt.weights.model import MODEL_PARTS, check_model_folder
from mmgt.weights.report import STATUSES, PartStatus, existing_folder, summarize

__all__ = [
    "BASE_LAYOUT",
    "MODEL_PARTS",
    "STATUSES",
    "BasePart",
    "PartStatus",
    "base_folders",
    "check_base_folder",
    "check_folder",
    "check_model_folder",
    "folder_kind",
    "summarize",
]


def folder_kind(folder: str | os.PathLike) -> str:
    """``"model"`` for a trained MMGT model folder (mmgt.json, stage1/ or stage2/ present), else ``"base"``."""
    root = Path(folder)
    model = (root / MODEL_PARTS[0]).is_file() or any((root / s).is_dir() for s in MODEL_PARTS[1:3])
    return "model" if model else "base"


def check_folder(folder: str | os.PathLike, preset: str = "sd15") -> list[PartStatus]:
    """:func:`check_model_folder` or :func:`check_base_folder`, whichever :func:`folder_kind` says ``folder`` is."""
    if folder_kind(existing_folder(folder)) == "model":
        return check_model_folder(folder)
    return check_base_folder(folder, preset)
