"""The bundled demo: a tiny model trained on the synthetic speaker world, a reference speaker and its pose.

Files (package data, produced by ``make demo-weights``, see ``scripts/make_demo_weights.sh``)::

    mmgt/assets/demo/
      model/          an MMGTPipeline folder (mmgt.json, stage1/, stage2/), fp16 safetensors
      speaker.png     the reference identity at rest, at the model size
      speaker.npz     its ground-truth pose (so the demo needs no detector)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmgt.contracts import PoseSequence
from mmgt.data.synthetic.speech import synthesize_speech
from mmgt.errors import ModelFolderError
from mmgt.utils.audio_io import save_audio

DEMO_DIR = Path(__file__).resolve().parent.parent / "assets" / "demo"


@dataclass(frozen=True)
class DemoAssets:
    model: Path
    image: Path
    pose: Path

    def reference_pose(self) -> PoseSequence:
        return PoseSequence.load(self.pose)


def demo_assets(root: str | os.PathLike = DEMO_DIR) -> DemoAssets:
    """The bundled demo files, or a ModelFolderError saying how to make them."""
    root = Path(root)
    assets = DemoAssets(root / "model", root / "speaker.png", root / "speaker.npz")
    missing = [p.name for p in (assets.model / "mmgt.json", assets.image, assets.pose) if not p.is_file()]
    if missing:
        raise ModelFolderError(
            f"bundled demo incomplete in {root} (missing {', '.join(missing)}); rebuild it with `make demo-weights`"
        )
    return assets


def demo_speech(path: str | os.PathLike, seconds: float, seed: int = 0) -> Path:
    """Write a procedural speech clip (16 kHz wav) of ``seconds`` to ``path``; same seed, same clip."""
    clip = synthesize_speech(seconds, np.random.default_rng(seed))
    return save_audio(path, clip.wave, clip.sample_rate)
