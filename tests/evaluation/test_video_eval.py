"""``mmgt eval video``: the report on a small synthetic set, generation with --model, and one-line errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mmgt.cli import main
from mmgt.errors import MmgtError
from mmgt.evaluation import weight_files as wf
from mmgt.utils.audio_io import save_audio
from mmgt.utils.files import sha256_file
from mmgt.utils.video_writer import save_video

FRAMES, SIZE = 8, 64


@pytest.fixture(scope="module")
def clip_sets(tmp_path_factory):
    """Three real synthetic clips (8 frames, 64 px, wav beside each) and 'generated' ones: the real frames + noise."""
    from mmgt.data.synthetic import generate_clip, make_identities

    root = tmp_path_factory.mktemp("video_eval")
    real, generated = root / "real", root / "generated"
    people = make_identities(2, seed=0)
    rng = np.random.default_rng(0)
    for i in range(3):
        clip = generate_clip(seed=10 + i, seconds=FRAMES / 25, size=SIZE, identity=people[i % 2])
        save_video(real / f"clip{i}.mp4", clip.frames[:FRAMES], audio=clip.wave, sample_rate=16000)
        save_audio(real / f"clip{i}.wav", clip.wave)
        noisy = np.clip(clip.frames[:FRAMES] + rng.normal(0, 12, clip.frames[:FRAMES].shape), 0, 255)
        save_video(generated / f"clip{i}.mp4", noisy.astype(np.uint8))
    return real, generated


def _random_weights(folder):
    """A random-init AlexNet (torchvision layout) and syncnet_v2 state dict, as a user would pass the real ones."""
    from metric_layouts import SYNCNET_V2, random_state
    from mmgt.evaluation.lpips import alexnet_features

    torch.manual_seed(0)
    alexnet, syncnet = folder / "alexnet.pth", folder / "syncnet_v2.model"
    torch.save({f"features.{k}": v for k, v in alexnet_features().state_dict().items()}, alexnet)
    torch.save(random_state(SYNCNET_V2), syncnet)
    return alexnet, syncnet


def test_writes_the_report_with_every_requested_metric(clip_sets, tmp_path, monkeypatch, capsys):
    if wf.packaged_path(wf.LPIPS_LINEAR) is None:
        pytest.skip("the lpips wheel is not installed (make setup)")
    real, generated = clip_sets
    alexnet, syncnet = _random_weights(tmp_path)
    # A random AlexNet cannot have torchvision's checksum: accept any file for this test only.
    monkeypatch.setattr(wf, "LPIPS_ALEXNET", dataclasses.replace(wf.LPIPS_ALEXNET, sha256=()))
    out = tmp_path / "report"
    argv = ["eval", "video", "--real", str(real), "--generated", str(generated), "-o", str(out), "--quiet"]
    argv += ["--clips", "2", "--metrics", "fidelity", "lpips", "sync", "pose", "--lpips-alexnet", str(alexnet)]
    argv += ["--syncnet", str(syncnet)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| PSNR (dB) |" in printed and "skipped FGD" in printed
    data = json.loads((out / "metrics.json").read_text())
    assert data["clips"] == ["clip0", "clip1"]  # --clips 2: clip2 (generated too) is left out
    assert data["video"]["fps"] == 25 and data["video"]["width"] == SIZE and data["video"]["total_frames"] == 16
    metrics = data["metrics"]
    assert set(metrics) == {"psnr", "ssim", "lpips", "sync_c", "sync_d", "hkc", "hkv", "lip_sync", "beat_align",
                            "diversity"}  # fmt: skip
    assert 25 < metrics["psnr"]["values"]["generated"] < 35  # noise of sigma 12 on uint8: about 26.5 dB
    assert set(metrics["psnr"]["per_clip"]["generated"]) == {"clip0", "clip1"}
    assert metrics["lpips"]["values"]["generated"] > 0
    assert metrics["sync_c"]["weights"][0]["sha256"] == sha256_file(syncnet)
    assert "MediaPipe face detection" in metrics["sync_d"]["implementation"]
    assert metrics["hkc"]["reference"] is not None and "MediaPipe Holistic" in metrics["hkc"]["implementation"]
    assert [s["metric"] for s in data["skipped"]] == ["FGD"]
    assert {p.name for p in out.iterdir()} >= {"report.md", "distributions.png", "contact_sheet.png"}


@pytest.fixture(scope="module")
def one_clip_dataset(tmp_path_factory):
    """An mmgt dataset of one 10-frame test clip at 64 px."""
    from mmgt.data.synthetic.world import write_synthetic_dataset

    root = tmp_path_factory.mktemp("one_clip")
    write_synthetic_dataset(root, clips=1, seconds=0.4, size=SIZE, seed=0, identities=1, workers=1, progress=False)
    return root


@pytest.mark.parametrize("kind", [pytest.param("stage2", marks=pytest.mark.slow), "full"])
def test_generates_missing_clips_with_the_model_first(kind, one_clip_dataset, tmp_path):
    from builders import tiny_stage2
    from mmgt.app.demo import demo_assets

    if kind == "stage2":
        model = tmp_path / "stage2"
        tiny_stage2().save_pretrained(model)
    else:
        model = demo_assets().model  # the bundled end-to-end model (mmgt.json, stage1/, stage2/)
    generated, out = tmp_path / "generated", tmp_path / "report"
    argv = ["eval", "video", "--real", str(one_clip_dataset), "--generated", str(generated), "--model", str(model)]
    argv += ["--steps", "1", "--pose-steps", "2", "--metrics", "fidelity", "-o", str(out), "--quiet"]
    assert main(argv) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["inputs"]["model"] == str(model) and data["inputs"]["split"] == "test"
    assert data["video"]["frames"][data["clips"][0]] == [10, 10, 10]  # ceil(0.4 s x 25) generated frames
    assert data["timings_s"]["generation"] > 0


def _bad_case(case: str, clip_sets, tmp_path) -> tuple[list[str], str]:
    """(extra argv, expected message) of one bad input; the generated folder is a fresh copy to break."""
    import shutil

    real, generated = clip_sets
    gen = tmp_path / "gen"
    shutil.copytree(generated, gen)
    frames = np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8)
    extra = ["--metrics", "fidelity"]
    if case == "empty":
        shutil.rmtree(gen)
        gen.mkdir()
        message = "no generated videos"
    elif case == "unknown_id":
        save_video(gen / "stranger.mp4", frames)
        message = "match no real clip id: stranger"
    elif case == "missing":
        (gen / "clip1.mp4").unlink()
        message = "no generated video for 1 of 3 real clips: clip1"
    elif case == "unreadable":
        (gen / "clip2.mp4").write_bytes(b"\x00garbage" * 100)
        message = "clip2.mp4"
    elif case == "fps":
        save_video(gen / "clip0.mp4", frames, fps=30)
        message = "30 fps, but the other videos have 25 fps"
    elif case == "size":
        save_video(gen / "clip0.mp4", frames[:, :48, :48])
        message = "48x48 px, but the other videos are 64x64"
    elif case == "length":
        save_video(gen / "clip0.mp4", frames[:6])
        message = "clip clip0: 8 real frames but 6 generated"
    elif case == "checksum":
        (tmp_path / "default_1.pt").write_bytes(b"not the inception")
        extra = ["--metrics", "fid", "--inception", str(tmp_path / "default_1.pt")]
        message = "checksum mismatch for TF-FID InceptionV3"
    else:  # layout
        torch.save({"netcnnaud.0.weight": torch.zeros(1)}, tmp_path / "syncnet_v2.model")
        extra = ["--metrics", "sync", "--syncnet", str(tmp_path / "syncnet_v2.model")]
        message = "not the SyncNet (syncnet_v2) layout"
    return ["--real", str(real), "--generated", str(gen), *extra], message


@pytest.mark.parametrize(
    "case", ["empty", "unknown_id", "missing", "unreadable", "fps", "size", "length", "checksum", "layout"]
)
def test_bad_input_gives_one_line_error_and_no_report(case, clip_sets, tmp_path, capsys):
    args, message = _bad_case(case, clip_sets, tmp_path)
    out = tmp_path / "out" / "report"
    assert main(["eval", "video", *args, "-o", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmgt: error: ") and message in err[0], err
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


def test_score_videos_is_the_python_entry_point(clip_sets):
    from mmgt.evaluation.image_quality import psnr, ssim
    from mmgt.evaluation.video_eval import VideoEvalOptions
    from mmgt.training.validate_video import score_videos
    from mmgt.utils.video_io import read_video_frames

    real, generated = clip_sets
    options = VideoEvalOptions(groups=("fidelity",), progress=False)
    metrics = score_videos(real, generated, num_clips=2, options=options)
    assert set(metrics) == {"psnr", "ssim"}
    pairs = [(read_video_frames(real / f"clip{i}.mp4"), read_video_frames(generated / f"clip{i}.mp4")) for i in (0, 1)]
    assert metrics["psnr"] == pytest.approx(np.mean([psnr(g, r) for r, g in pairs]), rel=1e-9)
    assert metrics["ssim"] == pytest.approx(np.mean([ssim(g, r) for r, g in pairs]), rel=1e-9)


def test_real_clips_of_a_dataset_and_its_errors(one_clip_dataset, tmp_path):
    from mmgt.data.manifest import read_manifest
    from mmgt.training.validate_video import real_clips

    (record,) = read_manifest(one_clip_dataset, "test")
    assert real_clips(one_clip_dataset) == [
        (record.id, record.path(one_clip_dataset, "video"), record.path(one_clip_dataset, "audio"))
    ]
    with pytest.raises(MmgtError, match="--real .*: no clips in split 'val'"):
        real_clips(one_clip_dataset, "val", "--real")
    with pytest.raises(MmgtError, match="folder not found"):
        real_clips(tmp_path / "absent")


def test_an_id_list_restricts_the_evaluation_to_its_clips(synth_dataset, tmp_path, capsys):
    """`--ids test_ids.txt` scores exactly the listed clips of a generated set that holds more; an id the split lacks
    is a one-line error and no report."""
    import shutil

    from mmgt.data.id_list import write_test_ids
    from mmgt.data.manifest import read_manifest

    records = read_manifest(synth_dataset, "test")
    assert len(records) == 2
    generated = tmp_path / "generated"
    generated.mkdir()
    for record in records:  # every test clip has a generated video; the list names only the second
        shutil.copy(record.path(synth_dataset, "video"), generated / f"{record.id}.mp4")
    ids = write_test_ids(tmp_path / "test_ids.txt", records[1:])
    out = tmp_path / "report"
    argv = ["eval", "video", "--real", str(synth_dataset), "--generated", str(generated), "--quiet"]
    assert main([*argv, "--ids", str(ids), "--metrics", "fidelity", "-o", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["clips"] == [records[1].id]

    other = tmp_path / "other.txt"
    other.write_text("no_such_clip\n")
    assert main([*argv, "--ids", str(other), "--metrics", "fidelity", "-o", str(tmp_path / "r2")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 of 1 listed clip(s) are not in the test split" in err[0], err
    assert not (tmp_path / "r2").exists()


def test_the_self_reference_halves_mix_a_round_robin_set():
    """Clips alternating between two 'people' (features 5 apart in each of 4 dims): even/odd halves would put one
    person in each half (Fréchet distance ~100); the random halves mix them, so the reference stays a noise floor."""
    from mmgt.evaluation.frechet import frechet_distance_from_features
    from mmgt.evaluation.video_eval import frechet_metric

    rng = np.random.default_rng(1)
    per_clip = {f"clip{i:02d}": rng.normal(loc=5.0 * (i % 2), size=(50, 4)) for i in range(16)}
    ids = sorted(per_clip)
    by_parity = [np.concatenate([per_clip[c] for c in ids[start::2]]) for start in (0, 1)]
    assert frechet_distance_from_features(*by_parity) > 90
    reference = frechet_metric("fid", per_clip, per_clip, implementation="test").reference
    assert reference < 30
    reordered = dict(reversed(per_clip.items()))  # the split depends on the ids, not on their order
    assert frechet_metric("fid", reordered, per_clip, implementation="test").reference == pytest.approx(reference)
