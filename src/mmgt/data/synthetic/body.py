"""A synthetic speaker's body: per-identity proportions and the 3D-ish face template that the motion moves.

Static geometry (x right, y down): proportions in image fractions, the face in face half-widths.
:mod:`mmgt.data.synthetic.speaker` moves it with the audio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BodyShape:
    """Proportions of one identity, as fractions of the image size (x right, y down)."""

    head_size: float = 0.105  # face half-width
    shoulder_half: float = 0.2
    neck_length: float = 0.075  # chin to shoulder line
    upper_arm: float = 0.2
    forearm: float = 0.18
    hand_length: float = 0.08
    torso_length: float = 0.43  # shoulder line to hips
    hip_half_ratio: float = 0.78  # hip half-width / shoulder half-width
    center_x: float = 0.5
    shoulder_y: float = 0.51
    mouth_max: float = 0.31  # full mouth opening, in face half-widths

    def to_dict(self) -> dict:
        return asdict(self)


def random_body(rng: np.random.Generator) -> BodyShape:
    """Random proportions within ranges that keep the whole upper body inside the frame."""
    u = lambda lo, hi: round(float(rng.uniform(lo, hi)), 4)  # noqa: E731
    return BodyShape(
        head_size=u(0.095, 0.12),
        shoulder_half=u(0.18, 0.24),
        neck_length=u(0.06, 0.09),
        upper_arm=u(0.18, 0.22),
        forearm=u(0.16, 0.2),
        hand_length=u(0.07, 0.09),
        torso_length=u(0.40, 0.46),
        hip_half_ratio=u(0.7, 0.85),
        center_x=u(0.46, 0.54),
        shoulder_y=u(0.48, 0.54),
        mouth_max=u(0.28, 0.34),
    )


def _arc(x0, x1, y0, y1, n, bulge) -> np.ndarray:
    x = np.linspace(x0, x1, n)
    return np.stack([x, np.linspace(y0, y1, n) - bulge * np.sin(np.linspace(0, np.pi, n))], axis=1)


def _face_template() -> np.ndarray:
    """(68, 3) iBUG-68 face in face half-widths: x right (image), y down, z towards the camera; origin at eye level."""
    t = np.linspace(0, 1, 17)
    jaw = np.stack([-0.95 * np.cos(np.pi * t), -0.1 + 1.0 * np.sin(np.pi * t), -0.1 + 0.6 * np.sin(np.pi * t) ** 2], 1)
    brow_r, brow_l = _arc(-0.75, -0.15, -0.42, -0.45, 5, 0.08), _arc(0.15, 0.75, -0.45, -0.42, 5, 0.08)
    bridge = np.stack([np.zeros(4), np.linspace(-0.3, 0.15, 4)], 1)
    nostrils = np.stack([np.linspace(-0.2, 0.2, 5), [0.25, 0.27, 0.28, 0.27, 0.25]], 1)
    # Eyes: 6 points each; subject's right eye (image left) starts at its outer corner, the left at its inner one.
    eye_r = np.array([[-0.59, -0.25], [-0.48, -0.32], [-0.36, -0.32], [-0.25, -0.25], [-0.36, -0.18], [-0.48, -0.18]])
    eye_l = eye_r[[3, 2, 1, 0, 5, 4]] * [-1, 1]
    outer = np.array(
        [
            [-0.3, 0.55],
            [-0.2, 0.49],
            [-0.08, 0.46],
            [0, 0.48],
            [0.08, 0.46],
            [0.2, 0.49],
            [0.3, 0.55],
            [0.2, 0.62],
            [0.08, 0.65],
            [0, 0.66],
            [-0.08, 0.65],
            [-0.2, 0.62],
        ]
    )
    inner = np.array(
        [[-0.22, 0.55], [-0.08, 0.55], [0, 0.55], [0.08, 0.55], [0.22, 0.55], [0.08, 0.55], [0, 0.55], [-0.08, 0.55]]
    )  # closed: upper and lower inner lips coincide
    xy = np.concatenate([brow_r, brow_l, bridge, nostrils, eye_r, eye_l, outer, inner])
    z = np.concatenate(
        [
            np.full(10, 0.55),
            np.linspace(0.65, 0.95, 4),
            [0.7, 0.75, 0.8, 0.75, 0.7],
            np.full(12, 0.55),
            np.full(20, 0.75),
        ]
    )
    return np.concatenate([jaw, np.concatenate([xy, z[:, None]], axis=1)]).astype(np.float64)


FACE_TEMPLATE = _face_template()
# How far each face point moves down per unit of mouth opening (lower lips and chin follow the jaw).
MOUTH_WEIGHTS = np.zeros(68)
MOUTH_WEIGHTS[0:17] = 0.6 * np.sin(np.linspace(0, np.pi, 17)) ** 2
MOUTH_WEIGHTS[[48, 54, 60, 64]] = 0.45
MOUTH_WEIGHTS[55:60] = [0.7, 0.95, 1.0, 0.95, 0.7]
MOUTH_WEIGHTS[65:68] = [0.95, 1.0, 0.95]
UPPER_LIDS, LOWER_LIDS = [37, 38, 43, 44], [41, 40, 47, 46]  # paired top/bottom eyelid points
EAR_TEMPLATE = np.array([[-0.98, -0.1, -0.2], [0.98, -0.1, -0.2]])  # subject's right ear (image left), left ear
