"""Procedural whole-body motion caused by audio, in the 134-keypoint layout.

Every coupling is local in time (within ±0.5 s of the audio event) so that a model seeing ~3 s windows can learn it
from the audio alone:

* mouth opening = mouth_max * (RMS envelope, 3-tap zero-lag smoothing);
* head nod (down-up, 250-400 ms) starting at each stressed onset; yaw/roll sway that grows in pauses; blinks;
* a beat gesture of one or both hands timed to each stressed onset, with the phases of real beat gestures: an
  80-100 ms stroke that reaches its apex 60 ms before the stressed vowel (velocity peak 100-110 ms before it), a
  100 ms hold at the apex across the onset (the velocity minimum, i.e. the kinematic beat of the BC/BAS metric, which
  then lines up with the audio onset that librosa finds at the syllable's start), and a slower 350-500 ms
  retraction; direction, amplitude and hand are random (one-to-many);
* slow idle drift of wrists, fingers and torso.

Randomness is drawn once into a :class:`MotionPlan` (:func:`plan_motion`); :func:`pose_from_plan` is deterministic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mmgt.constants import BODY_INDEX, FACE, FEET, FPS, LEFT_HAND, LEGS, NUM_KEYPOINTS, RIGHT_HAND, num_frames_for
from mmgt.contracts import PoseSequence
from mmgt.data.synthetic.body import (
    EAR_TEMPLATE,
    FACE_TEMPLATE,
    LOWER_LIDS,
    MOUTH_WEIGHTS,
    UPPER_LIDS,
    BodyShape,
)
from mmgt.data.synthetic.speech import Syllable, detect_syllables
from mmgt.errors import MediaError, MmgtError

# Coupling parameters (documented in docs/synthetic.md).
ENVELOPE_SMOOTHING = (0.25, 0.5, 0.25)  # zero-lag 3-tap smoothing of the RMS envelope before it opens the mouth
ENVELOPE_PERCENTILE = 99  # the envelope is RMS / (this percentile of the clip's frame RMS), clipped to 1
NOD_DEG, NOD_S = (6.0, 11.0), (0.25, 0.4)  # nod amplitude and duration ranges
STROKE_S, RETURN_S = (0.08, 0.10), (0.35, 0.5)  # beat gesture stroke and retraction durations
APEX_LEAD_S, HOLD_S = 0.06, 0.10  # the stroke's apex comes this long before the stressed onset and is held this long
STROKE_AMPLITUDE = (0.08, 0.13)  # wrist displacement, fraction of the image size
HAND_CHOICE_P = {"left": 0.35, "right": 0.35, "both": 0.3}
BLINK_S, BLINK_INTERVAL_S = 0.16, (2.5, 4.5)
SWAY_DEG = {"yaw": 8.0, "roll": 4.0, "pitch": 2.0}  # head sway amplitudes in pauses (a third of it while speaking)
REST_WRIST = (0.08, 0.29)  # rest wrist: this far towards the body centre and down from the shoulder (image fractions)
# Smooth idle curves of a plan: head angles, torso sway/tilt, right/left wrist x/y drift, right/left finger curl.
NOISE_CURVES = ("yaw", "roll", "pitch", "sway_x", "tilt", "rwx", "rwy", "lwx", "lwy", "rcurl", "lcurl")


@dataclass(frozen=True, eq=False)
class AudioDrive:
    """What the motion generator reads from the audio, at 25 fps.

    Attributes:
        envelope: (T,) RMS energy per 40 ms frame, normalised to 0..1.
        onsets: (n,) int frame indices of syllable onsets.
        stressed: (m,) int frame indices of stressed-syllable onsets.
        onset_times_s, stressed_times_s: the same events in seconds (sub-frame timing for smooth motion).
    """

    envelope: np.ndarray
    onsets: np.ndarray
    stressed: np.ndarray
    onset_times_s: np.ndarray
    stressed_times_s: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.envelope)


def rms_envelope(wave: np.ndarray, sr: int, fps: int = FPS) -> np.ndarray:
    """(T,) RMS of each 1/fps frame of ``wave`` (the last, partial frame uses the samples it has)."""
    wave = np.asarray(wave, dtype=np.float64)
    t = num_frames_for(len(wave), sr, fps)
    bounds = (np.arange(t + 1) * sr) // fps  # exact integer frame edges
    csum = np.concatenate([[0.0], np.cumsum(wave**2)])
    hi = np.minimum(bounds[1:], len(wave))
    return np.sqrt((csum[hi] - csum[bounds[:-1]]) / np.maximum(hi - bounds[:-1], 1))


def audio_drive(wave: np.ndarray, sr: int, syllables: list[Syllable] | None = None) -> AudioDrive:
    """The audio features that cause motion, computed from the waveform.

    Args:
        wave: (N,) mono audio.
        sr: its sample rate.
        syllables: known syllable events; detected with :func:`detect_syllables` when None.

    Returns:
        An :class:`AudioDrive` with T = ``num_frames_for(N, sr)`` frames.
    """
    wave = np.asarray(wave)
    if wave.ndim != 1 or len(wave) == 0:
        raise MediaError(f"audio_drive: expected non-empty mono (N,) audio, got shape {wave.shape}")
    rms = rms_envelope(wave, sr)
    ref = np.percentile(rms, ENVELOPE_PERCENTILE)
    envelope = np.clip(rms / ref, 0.0, 1.0) if ref > 0 else np.zeros_like(rms)
    if syllables is None:
        syllables = detect_syllables(wave, sr)
    on_s = np.array([s.vowel_onset_s for s in syllables], dtype=np.float64)
    st_s = np.array([s.vowel_onset_s for s in syllables if s.stressed], dtype=np.float64)
    to_frame = lambda t: np.minimum((t * FPS).astype(np.int64), len(rms) - 1)  # noqa: E731
    return AudioDrive(envelope.astype(np.float32), to_frame(on_s), to_frame(st_s), on_s, st_s)


# ---------------------------------------------------------------------------------------------------------------------
# The random plan
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gesture:
    """A beat gesture: wrist displacement ``amplitude * direction`` (image fractions) reached in ``stroke_s``."""

    onset_s: float
    hand: str  # "left", "right" or "both"
    direction: tuple[float, float]
    amplitude: float
    stroke_s: float
    return_s: float


@dataclass(frozen=True, eq=False)
class MotionPlan:
    """All random choices of one clip; (T,) curves are smooth idle noise in [-1, 1]."""

    gestures: list[Gesture]
    nods: list[tuple[float, float, float]]  # (onset_s, amplitude_deg, duration_s)
    blinks: list[float]  # blink start times, s
    noise: dict[str, np.ndarray]  # smooth idle curves, each (T,)
    finger_curl: tuple[float, float]  # base curl of the right and left hand, 0..1

    def events(self) -> dict:
        """JSON-serialisable summary for dataset metadata."""
        return {
            "gestures": [
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(g).items()} for g in self.gestures
            ],
            "nods": [[round(v, 4) for v in n] for n in self.nods],
            "blinks": [round(b, 4) for b in self.blinks],
        }


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, freq_hz=(0.1, 0.45), n=3) -> np.ndarray:
    """Sum of ``n`` slow sinusoids with random frequencies and phases, scaled to [-1, 1]."""
    f, ph = rng.uniform(*freq_hz, size=n), rng.uniform(0, 2 * np.pi, size=n)
    return np.sin(2 * np.pi * f[None, :] * t[:, None] + ph[None, :]).sum(axis=1) / n


def plan_motion(drive: AudioDrive, rng: np.random.Generator) -> MotionPlan:
    """Draw the random parts of the motion: gesture hand/direction/amplitude/timing, nods, blinks, idle noise."""
    gestures, nods = [], []
    for onset in drive.stressed_times_s:
        hand = str(rng.choice(list(HAND_CHOICE_P), p=list(HAND_CHOICE_P.values())))
        angle = rng.uniform(np.deg2rad(-190.0), np.deg2rad(10.0))  # mostly upward/outward in image coordinates
        direction = (round(float(np.cos(angle)), 4), round(float(np.sin(angle)), 4))
        gestures.append(
            Gesture(
                float(onset),
                hand,
                direction,
                float(rng.uniform(*STROKE_AMPLITUDE)),
                float(rng.uniform(*STROKE_S)),
                float(rng.uniform(*RETURN_S)),
            )
        )
        nods.append((float(onset), float(rng.uniform(*NOD_DEG)), float(rng.uniform(*NOD_S))))
    duration = drive.num_frames / FPS
    blinks, tb = [], float(rng.uniform(0.2, BLINK_INTERVAL_S[1]))
    while tb < duration:
        blinks.append(tb)
        tb += float(rng.uniform(*BLINK_INTERVAL_S))
    t = _frame_times(drive.num_frames)
    noise = {k: _smooth_noise(rng, t) for k in NOISE_CURVES}
    curl = (float(rng.uniform(0.2, 0.6)), float(rng.uniform(0.2, 0.6)))
    return MotionPlan(gestures, nods, blinks, noise, curl)


# ---------------------------------------------------------------------------------------------------------------------
# Plan -> keypoints
# ---------------------------------------------------------------------------------------------------------------------
def _frame_times(num_frames: int) -> np.ndarray:
    """Pose frame f shows the middle of its 40 ms audio frame."""
    return (np.arange(num_frames) + 0.5) / FPS


def _stroke_profile(t: np.ndarray, stroke_s: float, return_s: float) -> np.ndarray:
    """Beat-gesture phases around a stressed onset at t = 0: stroke 0 -> 1 (raised cosine, velocity peak halfway)
    ending ``APEX_LEAD_S`` before the onset, hold at 1 for ``HOLD_S``, retraction 1 -> 0 in ``return_s``."""
    out = np.zeros_like(t)
    apex = -APEX_LEAD_S
    rise = (t >= apex - stroke_s) & (t < apex)
    hold = (t >= apex) & (t < apex + HOLD_S)
    fall = (t >= apex + HOLD_S) & (t < apex + HOLD_S + return_s)
    out[rise] = 0.5 - 0.5 * np.cos(np.pi * (t[rise] - apex + stroke_s) / stroke_s)
    out[hold] = 1.0
    out[fall] = 0.5 + 0.5 * np.cos(np.pi * (t[fall] - apex - HOLD_S) / return_s)
    return out


def _bump(t: np.ndarray, duration: float) -> np.ndarray:
    """sin^2 bump on [0, duration]: 0 -> 1 -> 0 with zero velocity at both ends."""
    u = t / duration
    return np.where((u >= 0) & (u <= 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)


def _rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(T, 3, 3) head rotations (radians); pitch > 0 nods the face down, yaw > 0 turns the nose right."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    rp = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, sp], -1), np.stack([zero, -sp, cp], -1)], -2)
    rr = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1), np.stack([zero, zero, one], -1)], -2)
    return rr @ ry @ rp


def _pause_weight(envelope: np.ndarray) -> np.ndarray:
    """(T,) ~1 in pauses, ~0 while speaking: 1 - the share of active frames in a 9-frame (0.36 s) window."""
    active = (envelope > 0.1).astype(np.float64)
    return 1.0 - np.convolve(np.pad(active, 4, mode="edge"), np.ones(9) / 9, mode="valid")


def _face_points(drive: AudioDrive, plan: MotionPlan, body: BodyShape) -> tuple[np.ndarray, np.ndarray]:
    """(T, 68, 3) face and (T, 2, 3) ears in face half-widths before rotation; mouth and eyelids applied."""
    n = drive.num_frames
    env = np.convolve(np.pad(drive.envelope.astype(np.float64), 1, mode="edge"), ENVELOPE_SMOOTHING, mode="valid")
    face = np.repeat(FACE_TEMPLATE[None], n, axis=0)
    face[:, :, 1] += body.mouth_max * env[:, None] * MOUTH_WEIGHTS[None, :]
    t = _frame_times(n)
    closure = np.zeros(n)
    for tb in plan.blinks:
        closure = np.maximum(closure, _bump(t - tb, BLINK_S))
    up, lo = face[:, UPPER_LIDS, 1], face[:, LOWER_LIDS, 1]
    mid = 0.5 * (up + lo) + 0.02  # eyes close slightly below the middle, as real lids do
    face[:, UPPER_LIDS, 1] = up + closure[:, None] * (mid - up)
    face[:, LOWER_LIDS, 1] = lo + closure[:, None] * (mid - lo)
    return face, np.repeat(EAR_TEMPLATE[None], n, axis=0)


def _head_angles(drive: AudioDrive, plan: MotionPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T,) yaw, pitch, roll in radians: nods at stressed onsets plus sway that grows in pauses."""
    t = _frame_times(drive.num_frames)
    sway = 1.0 / 3.0 + (2.0 / 3.0) * _pause_weight(drive.envelope)
    pitch = SWAY_DEG["pitch"] * sway * plan.noise["pitch"]
    for onset, amp, dur in plan.nods:
        pitch = pitch + amp * _bump(t - onset, dur)
    yaw = SWAY_DEG["yaw"] * sway * plan.noise["yaw"]
    roll = SWAY_DEG["roll"] * sway * plan.noise["roll"]
    return np.deg2rad(yaw), np.deg2rad(pitch), np.deg2rad(roll)


def _two_link_ik(shoulder: np.ndarray, wrist: np.ndarray, l1: float, l2: float, outward: float) -> np.ndarray:
    """(T, 2) elbow for a shoulder->wrist reach with segment lengths l1, l2 (wrist already within reach).

    ``outward`` (+1 / -1) picks the solution whose elbow points away from the body centre in x.
    """
    d = wrist - shoulder
    dist = np.linalg.norm(d, axis=1, keepdims=True)
    along = (l1**2 - l2**2 + dist**2) / (2 * dist)
    height = np.sqrt(np.maximum(l1**2 - along**2, 0.0))
    unit = d / dist
    perp = np.stack([-unit[:, 1], unit[:, 0]], axis=1)
    perp = perp * np.where(perp[:, :1] * outward >= 0, 1.0, -1.0)
    return shoulder + unit * along + perp * height


def _clamp_reach(shoulder: np.ndarray, wrist: np.ndarray, l1: float, l2: float) -> np.ndarray:
    d = wrist - shoulder
    dist = np.linalg.norm(d, axis=1, keepdims=True)
    target = np.clip(dist, abs(l1 - l2) + 0.1 * l2, 0.97 * (l1 + l2))
    return shoulder + d / np.maximum(dist, 1e-9) * target


def _wrist_offsets(drive: AudioDrive, plan: MotionPlan, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) gesture displacement (image fractions) of one wrist and (T,) its stroke activity (0..1)."""
    t = _frame_times(drive.num_frames)
    offset, activity = np.zeros((len(t), 2)), np.zeros(len(t))
    for g in plan.gestures:
        if g.hand not in (side, "both"):
            continue
        d = np.array(g.direction)
        if g.hand == "both" and side == "left":
            d = d * [-1, 1]  # symmetric two-handed beat
        prof = _stroke_profile(t - g.onset_s, g.stroke_s, g.return_s)
        offset += g.amplitude * prof[:, None] * d[None, :]
        activity = np.maximum(activity, prof)
    return offset, activity


def _hand(wrist: np.ndarray, elbow: np.ndarray, curl: np.ndarray, length: float, mirror: float) -> np.ndarray:
    """(T, 21, 2) hand skeleton (wrist, thumb, index, middle, ring, little; 4 points each) along the forearm.

    ``curl`` (T,) in 0..1 flexes the fingers (seen as foreshortening plus a slight sideways bend); ``mirror`` is
    +1 / -1 to put the thumb on the side towards the body centre.
    """
    u = wrist - elbow
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    v = np.stack([-u[:, 1], u[:, 0]], axis=1) * mirror
    pts = [wrist]
    # (base along, base across, splay angle, 3 segment lengths) per finger, in hand lengths; the base is the thumb's
    # carpometacarpal joint or a finger's knuckle.
    fingers = [
        (0.1, 0.12, 0.9, (0.2, 0.16, 0.13)),
        (0.45, 0.16, 0.18, (0.23, 0.14, 0.1)),
        (0.46, 0.05, 0.05, (0.25, 0.16, 0.11)),
        (0.44, -0.06, -0.08, (0.23, 0.15, 0.1)),
        (0.4, -0.15, -0.2, (0.19, 0.11, 0.08)),
    ]
    for along, across, splay, segments in fingers:
        p = wrist + length * (along * u + across * v)
        pts.append(p)
        for j, seg in enumerate(segments, 1):
            # Flexion seen from the front: each joint bends the finger a little sideways and shortens it.
            bend = (splay - 0.35 * curl * j)[:, None]
            p = p + length * seg * (1.0 - 0.6 * curl)[:, None] * (np.cos(bend) * u + np.sin(bend) * v)
            pts.append(p)
    return np.stack(pts, axis=1)


def pose_from_plan(
    drive: AudioDrive, plan: MotionPlan, body: BodyShape, size: int, mouth_drive: AudioDrive | None = None
) -> PoseSequence:
    """Deterministic keypoints (pixels of a ``size`` x ``size`` image) for a drive and a plan.

    ``mouth_drive`` (same frame count) opens the mouth instead of ``drive``, whose events then move only the head
    and hands: the decoupled world of :func:`animate_with_events`.
    """
    if mouth_drive is not None and mouth_drive.num_frames != drive.num_frames:
        raise MmgtError(f"mouth drive has {mouth_drive.num_frames} frames, the body drive {drive.num_frames}")
    n, s = drive.num_frames, float(size)
    kp, scores = np.zeros((n, NUM_KEYPOINTS, 2)), np.ones((n, NUM_KEYPOINTS))
    # Torso: neck sways sideways, shoulders tilt slightly.
    neck = np.stack([np.full(n, body.center_x + 0.006 * plan.noise["sway_x"]), np.full(n, body.shoulder_y)], 1)
    tilt = np.deg2rad(1.5) * plan.noise["tilt"]
    across = np.stack([np.cos(tilt), np.sin(tilt)], 1) * body.shoulder_half
    r_sh, l_sh = neck - across, neck + across  # subject's right shoulder is on the image left
    hip_y = min(body.shoulder_y + body.torso_length, 0.97)
    hip_c = np.stack([body.center_x + 0.002 * plan.noise["sway_x"], np.full(n, hip_y)], 1)
    hip_w = np.array([body.shoulder_half * body.hip_half_ratio, 0.0])
    _set_body(kp, neck=neck, right_shoulder=r_sh, left_shoulder=l_sh, right_hip=hip_c - hip_w, left_hip=hip_c + hip_w)
    # Head.
    _place_head(kp, drive, plan, body, neck, drive if mouth_drive is None else mouth_drive)
    # Arms and hands.
    for side, sh, sign in (("right", r_sh, -1.0), ("left", l_sh, 1.0)):
        offset, activity = _wrist_offsets(drive, plan, side)
        key = side[0]
        idle = 0.012 * np.stack([plan.noise[f"{key}wx"], plan.noise[f"{key}wy"]], 1)
        rest = sh + np.array([-sign * REST_WRIST[0], REST_WRIST[1]])
        wrist = _clamp_reach(sh, rest + idle + offset, body.upper_arm, body.forearm)
        elbow = _two_link_ik(sh, wrist, body.upper_arm, body.forearm, outward=sign)
        curl_base = plan.finger_curl[0 if side == "right" else 1]
        curl = np.clip(curl_base + 0.1 * plan.noise[f"{key}curl"] - 0.3 * activity, 0.0, 1.0)
        _set_body(kp, **{f"{side}_elbow": elbow, f"{side}_wrist": wrist})
        kp[:, RIGHT_HAND if side == "right" else LEFT_HAND] = _hand(wrist, elbow, curl, body.hand_length, -sign)
    kp *= s
    invisible = list(LEGS) + list(FEET)
    kp[:, invisible], scores[:, invisible] = 0.0, 0.0
    visible = scores > 0
    kp = np.where(visible[..., None], np.clip(kp, 1.0, s - 1.0), kp)  # safety net: visible points stay inside
    return PoseSequence(kp.astype(np.float32), scores.astype(np.float32), size, size, FPS)


def _set_body(kp: np.ndarray, **points: np.ndarray) -> None:
    """Write (T, 2) trajectories of named body keypoints into (T, K, 2) ``kp``."""
    for name, xy in points.items():
        kp[:, BODY_INDEX[name]] = xy


def _place_head(
    kp: np.ndarray, drive: AudioDrive, plan: MotionPlan, body: BodyShape, neck: np.ndarray, mouth_drive: AudioDrive
) -> None:
    """Rotate the face template by the head angles (from ``drive``) and project it (orthographic) above the neck;
    ``mouth_drive``'s envelope opens the mouth."""
    face, ears = _face_points(mouth_drive, plan, body)
    yaw, pitch, roll = _head_angles(drive, plan)
    rot = _rotation(yaw, pitch, roll)
    w = body.head_size
    # A nod bends the neck too: the whole head drops a little as it pitches down.
    centre = neck + np.stack([np.zeros_like(pitch), -body.neck_length - 0.9 * w + 0.3 * w * np.sin(pitch)], 1)
    proj = lambda p: centre[:, None, :] + w * np.einsum("tij,tkj->tki", rot, p)[..., :2]  # noqa: E731
    face_xy, ears_xy = proj(face), proj(ears)
    kp[:, list(FACE)] = face_xy
    _set_body(
        kp,
        nose=face_xy[:, 30],
        right_eye=face_xy[:, 36:42].mean(1),
        left_eye=face_xy[:, 42:48].mean(1),
        right_ear=ears_xy[:, 0],
        left_ear=ears_xy[:, 1],
    )


def animate(drive: AudioDrive, rng: np.random.Generator, body: BodyShape, size: int) -> PoseSequence:
    """Motion caused by ``drive``: keypoints in pixels of a ``size`` x ``size`` image, T = ``drive.num_frames``.

    Args:
        drive: audio features from :func:`audio_drive`.
        rng: source of the random choices (gesture hand/direction/amplitude, nod size, blinks, idle drift).
        body: the identity's proportions.
        size: image side in pixels.
    """
    return animate_with_events(drive, rng, body, size)[0]


def animate_with_events(
    drive: AudioDrive, rng: np.random.Generator, body: BodyShape, size: int, body_drive: AudioDrive | None = None
) -> tuple[PoseSequence, dict]:
    """:func:`animate` plus the JSON-serialisable gestures, nods and blinks it chose (for dataset metadata).

    With ``body_drive`` (another utterance's drive, same frame count) the head nods, pause sway and beat gestures
    follow *its* events while ``drive`` still opens the mouth: a body that moves like a speaker's but carries no
    information about this clip's speech, so only the audio (or the mouth itself) can tell where the mouth opens.
    """
    if size < 16:
        raise MmgtError(f"size must be at least 16 pixels, got {size}")
    if body_drive is None:
        plan = plan_motion(drive, rng)
        return pose_from_plan(drive, plan, body, size), plan.events()
    plan = plan_motion(body_drive, rng)
    return pose_from_plan(body_drive, plan, body, size, mouth_drive=drive), plan.events()


def rest_pose(body: BodyShape, size: int) -> PoseSequence:
    """One frame: the identity at rest (mouth closed, eyes open, head straight, no idle offsets)."""
    silent = AudioDrive(np.zeros(1, np.float32), *(np.zeros(0, np.int64),) * 2, *(np.zeros(0),) * 2)
    plan = MotionPlan([], [], [], {k: np.zeros(1) for k in NOISE_CURVES}, (0.3, 0.3))
    return pose_from_plan(silent, plan, body, size)
