"""Motion caused by audio: the couplings are measured on generated data, with the audio analysed independently."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from mmgt.constants import BODY_INDEX, FACE_OFFSET, FEET, FPS, LEFT_HAND, LEGS, RIGHT_HAND, num_frames_for
from mmgt.data.synthetic.body import BodyShape, random_body
from mmgt.data.synthetic.speaker import AudioDrive, animate, audio_drive, rest_pose
from mmgt.data.synthetic.speech import VOICES, Syllable, synthesize_speech
from mmgt.errors import MediaError, MmgtError

SR, SIZE = 16_000, 128
WRISTS = (BODY_INDEX["right_wrist"], BODY_INDEX["left_wrist"])
UPPER_INNER_LIP, LOWER_INNER_LIP = FACE_OFFSET + 62, FACE_OFFSET + 66


def _rms_40ms(wave: np.ndarray) -> np.ndarray:
    """Independent reference: RMS of consecutive 640-sample (40 ms) frames, zero-padded at the end."""
    t = -(-len(wave) // 640)
    frames = np.pad(wave.astype(np.float64), (0, t * 640 - len(wave))).reshape(t, 640)
    return np.sqrt((frames**2).mean(axis=1))


def _clip(seed: int, seconds: float = 4.0):
    rng = np.random.default_rng(seed)
    speech = synthesize_speech(seconds, rng, list(VOICES.values())[seed % len(VOICES)])
    pose = animate(audio_drive(speech.wave, SR), rng, random_body(rng), SIZE)
    return speech, pose


@pytest.fixture(scope="module")
def clips():
    return [_clip(seed) for seed in range(6)]


def test_audio_drive_on_known_input():
    # 1 s of silence, 0.4 s of a loud tone, 0.6 s of a tone at half amplitude; known syllables.
    wave = np.zeros(2 * SR, np.float32)
    t = np.arange(int(0.4 * SR)) / SR
    wave[SR : SR + len(t)] = 0.5 * np.sin(2 * np.pi * 200 * t)
    wave[SR + len(t) :] = 0.25 * np.sin(2 * np.pi * 200 * np.arange(2 * SR - SR - len(t)) / SR)
    syllables = [Syllable(1.0, 1.01, 1.4, True, 6.0), Syllable(1.4, 1.43, 1.9, False, 0.0)]
    drive = audio_drive(wave, SR, syllables)
    assert drive.num_frames == num_frames_for(len(wave), SR) == 50
    np.testing.assert_allclose(drive.envelope[:25], 0.0)
    np.testing.assert_allclose(drive.envelope[25:35], 1.0, atol=1e-3)
    np.testing.assert_allclose(drive.envelope[36:], 0.5, atol=1e-3)
    np.testing.assert_array_equal(drive.onsets, [25, 35])  # floor(1.01 * 25), floor(1.43 * 25)
    np.testing.assert_array_equal(drive.stressed, [25])
    with pytest.raises(MediaError, match="mono"):
        audio_drive(np.zeros((2, 10)), SR)


def test_mouth_opening_follows_rms(clips):
    corrs = []
    for speech, pose in clips:
        opening = np.linalg.norm(pose.keypoints[:, LOWER_INNER_LIP] - pose.keypoints[:, UPPER_INNER_LIP], axis=1)
        rms = _rms_40ms(speech.wave)
        assert len(rms) == pose.num_frames
        corrs.append(np.corrcoef(opening, rms)[0, 1])
    assert min(corrs) >= 0.8, corrs  # measured: 0.97-0.98


def test_hand_speed_peaks_follow_stressed_onsets(clips):
    near, total, stroke_speeds = 0, 0, []
    for speech, pose in clips:
        onsets = speech.stressed_onsets_s  # the synthesiser's truth, not the detector's output
        for w in WRISTS:
            speed = np.linalg.norm(np.diff(pose.keypoints[:, w], axis=0), axis=1) * FPS / SIZE  # image sizes / s
            times = np.arange(1, pose.num_frames) / FPS  # speed between frames f-1 and f, at their boundary
            peaks, _ = find_peaks(speed, height=0.7)
            stroke_speeds += list(speed[peaks])
            for p in peaks:
                total += 1
                near += bool(len(onsets)) and np.abs(onsets - times[p]).min() <= 0.12
    assert total >= 20
    assert near / total >= 0.7, (near, total)  # measured: 0.87 over 20 clips (docs/synthetic.md)


def test_idle_motion_is_much_slower_than_strokes():
    silence = np.zeros(4 * SR, np.float32)
    rng = np.random.default_rng(0)
    pose = animate(audio_drive(silence, SR), rng, random_body(rng), SIZE)
    idle = max(np.linalg.norm(np.diff(pose.keypoints[:, w], axis=0), axis=1).max() for w in WRISTS) * FPS / SIZE
    assert idle < 0.1  # strokes peak at 0.9-2.0 image sizes per second
    opening = pose.keypoints[:, LOWER_INNER_LIP, 1] - pose.keypoints[:, UPPER_INNER_LIP, 1]
    np.testing.assert_allclose(opening, 0.0, atol=1e-3)  # silence: the mouth stays closed


def test_head_nods_down_after_stressed_onsets(clips):
    drops = []
    for speech, pose in clips:
        nose_y = pose.keypoints[:, BODY_INDEX["nose"], 1]
        for onset in audio_drive(speech.wave, SR).stressed_times_s:
            f = int(onset * FPS)
            if f + 5 < pose.num_frames:
                drops.append(nose_y[f + 4] - nose_y[max(f - 1, 0)])
    assert np.mean(np.array(drops) > 0) >= 0.8 and np.median(drops) > 1.0  # measured: 99 %, 2.2 px at 128 px


def test_blinks_close_the_eyes():
    rng = np.random.default_rng(4)
    pose = animate(audio_drive(np.zeros(10 * SR, np.float32), SR), rng, random_body(rng), SIZE)
    upper, lower = FACE_OFFSET + np.array([37, 38]), FACE_OFFSET + np.array([41, 40])
    openness = (pose.keypoints[:, lower, 1] - pose.keypoints[:, upper, 1]).mean(axis=1)
    closed = openness < 0.3 * openness.max()
    assert 2 <= np.sum(np.diff(closed.astype(int)) == 1) <= 5  # 2.5-4.5 s apart over 10 s
    assert closed.mean() < 0.15


def test_points_are_inside_and_scores_mark_visibility(clips):
    for _, pose in clips:
        assert pose.width == pose.height == SIZE and pose.fps == FPS
        vis = pose.scores > 0
        np.testing.assert_array_equal(pose.scores[:, list(LEGS) + list(FEET)], 0.0)
        assert vis.sum(axis=1).min() == 134 - len(LEGS) - len(FEET)
        np.testing.assert_array_equal(pose.scores[vis], 1.0)
        xy = pose.keypoints[vis]
        assert xy.min() >= 0.0 and xy.max() <= SIZE - 1


def test_hands_are_attached_skeletons(clips):
    _, pose = clips[0]
    for hand, wrist in ((RIGHT_HAND, BODY_INDEX["right_wrist"]), (LEFT_HAND, BODY_INDEX["left_wrist"])):
        pts = pose.keypoints[:, list(hand)]
        np.testing.assert_allclose(pts[:, 0], pose.keypoints[:, wrist])  # the hand root is the wrist
        reach = np.linalg.norm(pts - pts[:, :1], axis=2).max()
        assert 0.03 * SIZE < reach < 0.1 * SIZE  # fingers within a hand length of the wrist


def test_one_to_many_same_audio_different_gestures():
    speech = synthesize_speech(3.0, np.random.default_rng(9), VOICES["mid"])
    drive, body = audio_drive(speech.wave, SR), BodyShape()
    a = animate(drive, np.random.default_rng(1), body, SIZE)
    b = animate(drive, np.random.default_rng(2), body, SIZE)
    a2 = animate(drive, np.random.default_rng(1), body, SIZE)
    np.testing.assert_array_equal(a.keypoints, a2.keypoints)  # deterministic given the generator
    assert np.abs(a.keypoints[:, WRISTS] - b.keypoints[:, WRISTS]).max() > 3.0
    open_a = a.keypoints[:, LOWER_INNER_LIP, 1] - a.keypoints[:, UPPER_INNER_LIP, 1]
    open_b = b.keypoints[:, LOWER_INNER_LIP, 1] - b.keypoints[:, UPPER_INNER_LIP, 1]
    assert np.corrcoef(open_a, open_b)[0, 1] > 0.97  # the mouth is fixed by the audio


def test_rest_pose_and_size_checks():
    body = BodyShape()
    pose = rest_pose(body, 256)
    assert pose.num_frames == 1
    neck = pose.keypoints[0, BODY_INDEX["neck"]]
    np.testing.assert_allclose(neck, [body.center_x * 256, body.shoulder_y * 256], atol=1e-3)
    shoulders = pose.keypoints[0, [BODY_INDEX["right_shoulder"], BODY_INDEX["left_shoulder"]], 0]
    np.testing.assert_allclose(np.diff(shoulders), 2 * body.shoulder_half * 256, rtol=1e-5)
    assert pose.keypoints[0, BODY_INDEX["right_shoulder"], 0] < neck[0]  # subject's right is on the image left
    drive = AudioDrive(np.zeros(3, np.float32), *(np.zeros(0, np.int64),) * 2, *(np.zeros(0),) * 2)
    with pytest.raises(MmgtError, match="size"):
        animate(drive, np.random.default_rng(0), body, 8)


def test_field_beat_alignment_prefers_the_true_audio(clips):
    """The hold at each gesture apex makes the BC/BAS metric (velocity minima vs audio onsets) see the coupling."""
    from mmgt.evaluation.beat_align import beat_alignment_score

    own = [beat_alignment_score(pose, speech.wave, SR) for speech, pose in clips]
    other = [beat_alignment_score(pose, clips[(i + 1) % len(clips)][0].wave, SR) for i, (_, pose) in enumerate(clips)]
    assert np.mean(own) > np.mean(other) + 0.08, (own, other)  # measured: 0.77 vs 0.62 (6 clips)
    assert sum(o > x for o, x in zip(own, other)) >= 5
