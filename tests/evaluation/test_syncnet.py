"""Sync-C / Sync-D: MFCCs equal python_speech_features, LSE formulas equal Wav2Lip's, the layouts load strictly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metric_layouts import S3FD_LAYOUT, SYNCNET_V2, random_state
from mmgt.errors import MmgtError, ModelFolderError
from mmgt.evaluation import syncnet as sn

# python_speech_features 0.6 mfcc(x, 16000) of the test chirp, rows 0, 10 and 47 (computed once with that package).
PSF_ROWS = {
    0: [19.8080032925, 3.412268491, 1.7069001388, 39.3859248476, -18.4409734504, -24.2267394224, 19.5910539204,
        -34.2141715563, -40.2418032415, 2.946898768, -35.3686553141, -36.0846756121, 3.0511258185],
    10: [20.1125249125, 10.415516377, -8.0203874886, 24.582587529, -36.3510688816, -46.047690235, 0.6974995626,
         -43.1846043018, -35.0602280214, 20.196649404, -9.1683510838, -4.2111115434, 32.3029486659],
    47: [21.2316062593, 6.7085032506, -25.5911443596, -9.9222714983, -27.3256626381, 7.8698485905, 58.3991748764,
         -7.1433292836, -34.2004967549, 2.046420473, -16.0062861878, 3.117646295, 37.8177770692],
}  # fmt: skip


def test_mfcc_equals_python_speech_features():
    t = np.arange(8000) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (200 + 800 * t) * t) + 0.05 * np.sin(2 * np.pi * 3000 * t)
    ceps = sn.mfcc(sn.int16_scale(wave), 16000)
    assert ceps.shape == (49, 13)
    for row, expected in PSF_ROWS.items():
        np.testing.assert_allclose(ceps[row], expected, rtol=1e-8, atol=1e-8)


def _wav2lip_lse(dists: np.ndarray, vshift: int) -> tuple[float, float, int]:
    """SyncNetInstance.evaluate's lines, restated: mean over frames, min, median - min, vshift - argmin."""
    mdist = torch.mean(torch.stack([torch.from_numpy(row) for row in dists], 1), 1)
    minval, minidx = torch.min(mdist, 0)
    return float(minval), float(torch.median(mdist) - minval), int(vshift - minidx)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lse_formulas_equal_wav2lip_on_synthetic_distance_matrices(seed):
    rng = np.random.default_rng(seed)
    dists = rng.uniform(8, 14, (40, 31))
    dists[:, 15 + (seed - 1) * 4] -= 3.0  # a clear minimum at offset index 11, 15 or 19
    d, c, offset = sn.lse_from_distances(dists)
    ref = _wav2lip_lse(dists, 15)
    assert d == pytest.approx(ref[0], rel=1e-12) and c == pytest.approx(ref[1], rel=1e-12) and offset == ref[2]
    assert offset == -(seed - 1) * 4 and c > 2.0  # the dip is found, confident


def test_offset_distances_pad_the_audio_with_zeros():
    rng = np.random.default_rng(0)
    video, audio = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    d = sn.offset_distances(torch.from_numpy(video).float(), torch.from_numpy(audio).float(), vshift=2)
    assert d.shape == (6, 5)
    for t in range(6):
        for j in range(5):
            k = t + j - 2  # audio index of offset j
            a = audio[k] if 0 <= k < 6 else np.zeros(4)
            assert d[t, j] == pytest.approx(np.linalg.norm(video[t] - a + 1e-6), rel=1e-5)


def test_random_init_syncnet_v2_state_dict_loads_strictly_and_runs(tmp_path):
    path = tmp_path / "syncnet_v2.model"
    torch.save(random_state(SYNCNET_V2), path)
    model = sn.load_syncnet(path)
    with torch.no_grad():
        assert model.forward_lip(torch.zeros(2, 3, 5, 224, 224)).shape == (2, 1024)
        assert model.forward_aud(torch.zeros(2, 1, 13, 20)).shape == (2, 1024)
    frames = np.random.default_rng(0).integers(0, 256, (9, 224, 224, 3), dtype=np.uint8)
    wave = np.random.default_rng(1).normal(0, 0.1, 9 * 640)
    dists = sn.sync_distances(model, frames, wave)
    assert dists.shape == (4, 31) and np.isfinite(dists).all()  # 9 frames - 5 = 4 windows
    state = random_state(SYNCNET_V2)
    state["netcnnlip.18.weight"] = torch.zeros(512, 256, 1, 5, 5)
    torch.save(state, path)
    with pytest.raises(ModelFolderError, match=r"netcnnlip.18.weight has shape \(512, 256, 1, 5, 5\)"):
        sn.load_syncnet(path)
    del state["netfclip.3.bias"]
    torch.save(state, path)
    with pytest.raises(ModelFolderError, match="missing 'netfclip.3.bias'"):
        sn.load_syncnet(path)


def test_sync_embeddings_window_t_holds_frames_t_to_t_plus_4_and_mfccs_4t_to_4t_plus_19():
    torch.manual_seed(0)
    model = sn.SyncNet()
    frames = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
    wave = np.random.default_rng(1).normal(0, 0.1, 8 * 640)
    video, audio = sn.sync_embeddings(model, frames, wave, batch_size=2)  # windows split over two batches
    assert video.shape == audio.shape == (3, 1024)
    t = 2
    lip = torch.from_numpy(frames[t : t + 5, :, :, ::-1].copy()).float().permute(3, 0, 1, 2)[None]  # BGR, 0..255
    ceps = sn.mfcc(sn.int16_scale(wave))[4 * t : 4 * t + 20].T  # (13, 20)
    with torch.no_grad():
        torch.testing.assert_close(video[t], model.forward_lip(lip)[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(audio[t], model.forward_aud(torch.from_numpy(ceps).float()[None, None])[0])
    d, c, offset = sn.lse(model, frames, wave)
    assert (d, c, offset) == sn.lse_from_distances(sn.offset_distances(video, audio))


def test_too_short_clips_fail():
    with pytest.raises(MmgtError, match="at least 6 frames"):
        sn.sync_distances(sn.SyncNet(), np.zeros((5, 224, 224, 3), np.uint8), np.zeros(16000))


def test_face_crops_follow_run_pipeline_and_fill_gaps():
    frames = np.zeros((3, 100, 100, 3), np.uint8)
    frames[:, 40:60, 40:60] = 255  # a white "face" box
    boxes = np.array([[40.0, 40, 60, 60], [np.nan] * 4, [40, 40, 60, 60]])
    crops = sn.face_crops(frames, boxes)
    assert crops.shape == (3, 224, 224, 3)
    # half-size s = 10: rows y-10..y+18, cols x-14..x+14 -> the box fills rows 0..20 of 28 and cols 4..24 of 28.
    np.testing.assert_array_equal(crops[0], crops[1])  # the gap is interpolated from its neighbours
    assert crops[0, 10, 112].min() == 255 and crops[0, 200, 112].max() == 0 and crops[0, 10, 5].max() == 0
    with pytest.raises(MmgtError, match="no face found"):
        sn.fill_boxes(np.full((4, 4), np.nan))


def test_random_init_s3fd_state_dict_loads_strictly_and_detects_in_bounds(tmp_path):
    state = random_state(S3FD_LAYOUT)
    for name, scale in (("L2Norm3_3", 10.0), ("L2Norm4_3", 8.0), ("L2Norm5_3", 5.0)):
        state[f"{name}.weight"] = torch.full((256 if name == "L2Norm3_3" else 512,), scale)
    path = tmp_path / "sfd_face.pth"
    torch.save(state, path)
    detector = sn.S3FD(path, scale=1.0, threshold=0.0)  # threshold 0: random weights still give a best box
    frame = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    box = detector.box(frame)
    assert box.shape == (4,) and np.isfinite(box).all() and box[2] > box[0] and box[3] > box[1]
    assert np.isnan(sn.S3FD(path, scale=1.0, threshold=1.0).box(frame)).all()  # nothing beats probability 1
    priors = sn.s3fd_priors(96, 128, [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2), (1, 1)])
    assert priors.shape == (24 * 32 + 12 * 16 + 6 * 8 + 3 * 4 + 4 + 1, 4)
    np.testing.assert_allclose(priors[0], [2 / 128, 2 / 96, 16 / 128, 16 / 96])  # first cell: centre 2 px, size 16
