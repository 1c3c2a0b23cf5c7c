"""Regenerate docs/images/synthetic_identities.png: one row per synthetic identity.

Each row shows the identity's reference still, then three frames of one of its clips: the most open mouth, the frame
of the fastest hand stroke, and the deepest nod. Usage::

    python scripts/make_contact_sheet.py [--identities 6] [--size 128] [--seed 0] [--out docs/images/...png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from mmgt.constants import BODY_INDEX, FACE_OFFSET
from mmgt.data.synthetic.world import generate_clip, make_identities, reference_image

GAP = 4  # pixels between tiles


def _pick_frames(clip) -> list[int]:
    """Indices of the most open mouth, the fastest wrist and the lowest nose (relative to the neck)."""
    kp = clip.pose.keypoints
    opening = kp[:, FACE_OFFSET + 66, 1] - kp[:, FACE_OFFSET + 62, 1]
    wrists = [BODY_INDEX["right_wrist"], BODY_INDEX["left_wrist"]]
    speed = np.linalg.norm(np.diff(kp[:, wrists], axis=0), axis=2).max(axis=1)
    nod = kp[:, BODY_INDEX["nose"], 1] - kp[:, BODY_INDEX["neck"], 1]
    return [int(np.argmax(opening)), int(np.argmax(speed)) + 1, int(np.argmax(nod))]


def contact_sheet(identities: int, size: int, seed: int) -> np.ndarray:
    """(rows * (size + GAP), 4 * (size + GAP), 3) uint8 RGB sheet."""
    rows = []
    for i, person in enumerate(make_identities(identities, seed)):
        clip = generate_clip(seed * 1000 + i, 4.0, size, person)
        tiles = [reference_image(person, size)] + [clip.frames[f] for f in _pick_frames(clip)]
        rows.append(np.concatenate([np.pad(t, ((0, GAP), (0, GAP), (0, 0)), constant_values=255) for t in tiles], 1))
    return np.concatenate(rows, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=6, help="rows (identities), default 6")
    parser.add_argument("--size", type=int, default=128, help="tile size in pixels, default 128")
    parser.add_argument("--seed", type=int, default=0, help="identity seed, default 0")
    parser.add_argument("--out", type=Path, default=Path("docs/images/synthetic_identities.png"), help="output PNG")
    args = parser.parse_args()
    sheet = contact_sheet(args.identities, args.size, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise SystemExit(f"{args.out}: PNG encoding failed")
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_bytes(data.tobytes())
    tmp.replace(args.out)  # atomic
    print(f"wrote {args.out} ({len(data) / 1024:.0f} KB, {sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
