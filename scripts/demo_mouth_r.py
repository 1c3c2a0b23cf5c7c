"""Does the bundled demo's mouth follow speech it has never heard? (issue 15's end-to-end measure, docs/demo.md)

Speaks sentences with espeak-ng (none of them used anywhere else in the project), runs the full model on each (stage 1
from the demo speaker's known pose, then stage 2), and measures, against the speech's RMS envelope (best Pearson r
within ±2 frames, :func:`mmgt.evaluation.sync.best_lag_correlation`):

* ``video r``: the generated mouth region's activity (:func:`mmgt.evaluation.video_regions.mouth_activity`, the window
  fixed to the head that ``mmgt eval stage2`` uses);
* ``silent r``: the same, with stage 2 re-rendering the *same* stage-1 poses with silent audio (zero audio tokens):
  what the pose alone makes the mouth do;
* ``lip r``: stage 1's inner-lip opening (points 62/66 of the face), what the poses say the mouth does.

Usage::

    python scripts/demo_mouth_r.py [--model src/mmgt/assets/demo/model] [--sheet docs/images/demo_talking.png]

Needs ``espeak-ng`` on the PATH. Prints a markdown table; ``--sheet`` also writes a contact sheet of the first
sentence's output (12 frames: the most open generated mouths and the most closed ones, with the envelope value).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from mmgt.app.demo import demo_assets
from mmgt.constants import FACE_OFFSET
from mmgt.contracts import PoseSequence
from mmgt.evaluation.sync import audio_envelope, best_lag_correlation
from mmgt.evaluation.video_regions import mouth_activity
from mmgt.utils.audio_io import Audio, load_audio

SAMPLE_RATE = 16_000
# New sentences for this measure only (the synthetic speech and every earlier check used other text).
SENTENCES = (
    "Marble staircases echo softly while the orchestra tunes its violins.",
    "Please bring seven yellow lanterns to the harbour before midnight.",
    "A curious otter juggled pebbles beside the frozen waterfall.",
    "Thunderstorms rarely bother the patient lighthouse keeper.",
)


def speak(text: str, folder: Path, index: int) -> Audio:
    """espeak-ng speech of ``text`` at 16 kHz (a one-line error if espeak-ng is missing)."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("demo_mouth_r: espeak-ng is not installed (apt install espeak-ng)")
    path = folder / f"sentence{index}.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    return Audio(load_audio(path, sample_rate=SAMPLE_RATE), SAMPLE_RATE, name=f"sentence{index}")


def correlation(signal: np.ndarray, envelope: np.ndarray) -> float:
    best = best_lag_correlation(signal, envelope)
    return float("nan") if best is None else best[0]


def inner_lip_opening(poses: PoseSequence) -> np.ndarray:
    """(F,) vertical gap between the inner lips' middle points 62 and 66 of the face (pixels)."""
    kp = poses.keypoints
    return kp[:, FACE_OFFSET + 66, 1] - kp[:, FACE_OFFSET + 62, 1]


def contact_sheet(frames: np.ndarray, activity: np.ndarray, envelope: np.ndarray, path: Path) -> None:
    """Six frames of the most open generated mouths over six of the most closed, each labelled with the envelope."""
    order = np.argsort(activity)
    picks = [*sorted(order[-6:]), *sorted(order[:6])]
    tiles = []
    for i in picks:
        tile = cv2.resize(frames[i], (192, 192), interpolation=cv2.INTER_NEAREST).copy()
        cv2.putText(tile, f"f{i} env {envelope[i]:.2f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        tiles.append(tile)
    rows = [np.concatenate(tiles[:6], axis=1), np.concatenate(tiles[6:], axis=1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a full model folder (default: the bundled demo)")
    parser.add_argument("--sheet", type=Path, default=None, help="write a contact sheet of the first sentence here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from mmgt.pipelines.mmgt_pipeline import MMGTPipeline
    from mmgt.pipelines.reference import load_image

    assets = demo_assets()
    pipe = MMGTPipeline.from_pretrained(args.model or assets.model)
    image, pose = load_image(assets.image), assets.reference_pose()
    print("| sentence | seconds | video r | silent r | lip r (stage 1) |")
    print("|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES):
            audio = speak(text, Path(tmp), i)
            out = pipe(image, audio, reference_pose=pose, seed=args.seed, progress=False, return_masks=False)
            frames = out.frames
            envelope = audio_envelope(audio.wave, audio.sample_rate, len(frames))
            silent = pipe.stage2(
                out.reference, out.poses, None, generator=_generator(args.seed), progress=False
            ).frames
            activity = mouth_activity(frames, out.poses)
            row = (
                correlation(activity, envelope),
                correlation(mouth_activity(silent, out.poses), envelope),
                correlation(inner_lip_opening(out.poses), envelope),
            )
            rows.append(row)
            print(f"| {i} | {len(frames) / 25:.1f} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
            if i == 0 and args.sheet is not None:
                contact_sheet(frames, activity, envelope, args.sheet)
    mean = np.nanmean(np.array(rows), axis=0)
    print("| mean | | " + " | ".join(f"{v:.3f}" for v in mean) + " |")


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


if __name__ == "__main__":
    main()
