"""`mmgt train syncnet`: batches (in sync, shifted, other clips), exact resume, export, the acceptance measures."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from mmgt.app.demo import DEMO_DIR
from mmgt.config import SyncNetData, SyncNetTrain, load_config
from mmgt.contracts import PoseSequence
from mmgt.data.manifest import read_manifest
from mmgt.errors import ConfigError, MmgtError
from mmgt.evaluation import weight_files
from mmgt.evaluation.syncnet import lse_from_distances, offset_distances
from mmgt.evaluation.video_eval import VideoEvalOptions
from mmgt.models.lipsync import LipSyncExpert
from mmgt.training.common import latest_checkpoint
from mmgt.training.lipsync_data import (
    ExpertSyncScorer,
    SyncClips,
    clip_embeddings,
    sync_accuracy,
    training_batch,
    video_lse,
)
from mmgt.training.train_syncnet import main
from mmgt.training.validate_video import video_report
from mmgt.utils.audio_io import load_audio
from mmgt.utils.video_io import read_video_frames

TINY = ["batch_size=4", "log_every=1", "checkpoint_every=2", "validation.every=2", "optim.warmup_steps=1"]


def _cfg(root, out, name, steps, extra=()):
    overrides = [*TINY, f"data.root={root}", f"output_root={out}", f"name={name}", f"max_steps={steps}", *extra]
    return load_config(SyncNetTrain, "configs/syncnet/tiny.yaml", overrides)


def _csv(path):
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_batches_pair_windows_in_sync_or_shifted(synth_dataset):
    clips = SyncClips(synth_dataset, "train", crop_size=32, jitter=2)
    data = SyncNetData(min_shift=3, max_shift=6, other_clip_prob=0.5)
    batch = training_batch(clips, np.random.default_rng(0), 48, data)
    assert batch["crops"].shape == (48, 3, 5, 32, 32) and batch["audio"].shape == (48, 5, 81)
    assert batch["crops"].min() >= -1 and batch["crops"].max() <= 1
    other = 0
    for (clip, start, audio_clip, audio_start), label, audio in zip(
        batch["windows"].tolist(), batch["labels"].tolist(), batch["audio"]
    ):
        torch.testing.assert_close(audio, clips.window_audio(audio_clip, audio_start), atol=0, rtol=0)
        assert 0 <= start <= clips.num_frames(clip) - 5
        if label == 1.0:
            assert (audio_clip, audio_start) == (clip, start)
        elif audio_clip == clip:
            assert 3 <= abs(audio_start - start) <= 6
        else:
            other += 1
    assert 10 < batch["labels"].sum() < 38 and other > 0
    again = training_batch(clips, np.random.default_rng(0), 48, data)  # drawn from the generator alone
    assert all(torch.equal(batch[k], again[k]) for k in batch)


def test_vae_frames_join_the_batches_with_their_share(synth_dataset):
    vae = AutoencoderKL.from_pretrained(DEMO_DIR / "model" / "stage2" / "vae").eval()
    clips = SyncClips(synth_dataset, "train", crop_size=32, jitter=2, vae=vae)
    raw, decoded = clips.window_crops(0, 3), clips.window_crops(0, 3, decoded=True)  # (3, 5, 32, 32) each
    change = (raw - decoded).abs().mean().item()
    assert 0.005 < change < 0.3, change  # a reconstruction: close to the frames, not the frames

    def sources(prob):
        batch = training_batch(clips, np.random.default_rng(1), 16, SyncNetData(gain=0.0, vae_prob=prob))
        out = []
        for crops, (clip, start, *_) in zip(batch["crops"], batch["windows"].tolist()):
            hits = {  # the batch's jitter is unknown: compare against every placement
                d
                for d in (False, True)
                for dy in range(5)
                for dx in range(5)
                if torch.equal(crops, clips.window_crops(clip, start, dy, dx, decoded=d))
            }
            assert len(hits) == 1, hits
            out.append(hits.pop())
        return out

    assert sources(0.0) == [False] * 16 and sources(1.0) == [True] * 16
    assert 2 <= sum(sources(0.5)) <= 14


def test_train_resume_and_export(synth_dataset, tmp_path):
    final = main(_cfg(synth_dataset, tmp_path, "straight", 3, ["validation.split=test"]))
    run = tmp_path / "syncnet" / "straight"
    straight = _csv(run / "train_log.csv")
    assert [r["step"] for r in straight] == [1, 2, 3]
    assert all(0.05 < r["loss"] < 5 and 0 <= r["acc"] <= 1 for r in straight)
    assert latest_checkpoint(run)[1] == 3
    assert (run / "checkpoints" / "step-0000002" / "expert" / "config.json").is_file()
    val = _csv(run / "val_log.csv")
    assert [r["step"] for r in val] == [2, 3]
    assert all(0 <= r[k] <= 1 for r in val for k in ("val_acc", "val_pos_acc", "val_neg_acc", "val_offset_acc"))

    main(_cfg(synth_dataset, tmp_path, "resumed", 2, ["validation.split=test"]))
    main(_cfg(synth_dataset, tmp_path, "resumed", 3, ["validation.split=test"]), resume=True)
    assert _csv(tmp_path / "syncnet" / "resumed" / "train_log.csv") == straight  # exact resume

    expert = LipSyncExpert.from_pretrained(final)
    assert expert.config.crop_size == 32 and (final / "diffusion_pytorch_model.safetensors").is_file()


def test_training_with_the_vae_validates_both_domains(synth_dataset, tmp_path):
    vae = DEMO_DIR / "model" / "stage2" / "vae"
    main(_cfg(synth_dataset, tmp_path, "vae", 2, ["validation.split=test", f"data.vae={vae}"]))
    (row,) = _csv(tmp_path / "syncnet" / "vae" / "val_log.csv")
    for key in ("acc", "pos_acc", "neg_acc", "offset_acc"):
        assert 0 <= row[f"val_{key}"] <= 1 and 0 <= row[f"val_vae_{key}"] <= 1
    assert row["val_vae_sync_d"] != row["val_sync_d"]  # scored on other pixels
    with pytest.raises(MmgtError, match="data.vae"):
        main(_cfg(synth_dataset, tmp_path, "novae", 2, [f"data.vae={tmp_path / 'missing'}"]))


class _IndexClips:
    """Stands in for SyncClips: window t's crops and audio carry the number t (audio shifted by ``lag`` frames)."""

    def __init__(self, frames: int = 40, lag: int = 0):
        self.frames, self.lag = frames, lag

    def __len__(self) -> int:
        return 2

    def num_frames(self, clip: int) -> int:
        return self.frames

    def window_crops(self, clip: int, start: int, decoded: bool = False) -> torch.Tensor:
        return torch.full((3, 5, 32, 32), float(start))

    def window_audio(self, clip: int, start: int) -> torch.Tensor:
        return torch.full((5, 81), float(start - self.lag))


class _IndexExpert(LipSyncExpert):
    """Embeds window t as the t-th unit vector (video from the crops' value, audio from the features')."""

    def video_embedding(self, crops):
        return torch.nn.functional.one_hot(crops[:, 0, 0, 0, 0].long() % 64, 64).float()

    def audio_embedding(self, audio):
        return torch.nn.functional.one_hot(audio[:, 0, 0].long() % 64, 64).float()


def test_acceptance_measures_find_the_offset():
    expert = _IndexExpert()
    with torch.no_grad():
        expert.logit_scale.fill_(10.0), expert.logit_bias.fill_(-5.0)
    synced = sync_accuracy(expert, _IndexClips(lag=0))
    assert synced["acc"] == synced["pos_acc"] == synced["neg_acc"] == synced["offset_acc"] == 1.0
    assert synced["sync_d"] == pytest.approx(0.0, abs=1e-4) and synced["sync_c"] > 1.0  # distances 0 vs ~sqrt(2)
    late = sync_accuracy(expert, _IndexClips(lag=3))  # the audio runs 3 frames behind the video
    assert late["offset_acc"] == 0.0 and late["pos_acc"] == 0.0 and late["neg_acc"] == 1.0


def test_bad_values_fail_before_anything_is_written(synth_dataset, tmp_path):
    with pytest.raises(ConfigError, match="data.min_shift 9 must be <= data.max_shift 4"):
        main(_cfg(synth_dataset, tmp_path, "bad", 2, ["data.min_shift=9", "data.max_shift=4"]))
    with pytest.raises(ConfigError, match="model.overrides.crop: not a LipSyncExpert argument"):
        main(_cfg(synth_dataset, tmp_path, "bad", 2, ["model.overrides.crop=3"]))
    assert not (tmp_path / "syncnet").exists()


def test_video_lse_scores_a_video_like_the_validation(synth_dataset):
    torch.manual_seed(0)
    expert = LipSyncExpert.from_preset("tiny").eval()
    clips = SyncClips(synth_dataset, "test", crop_size=32)
    rec = clips.records[0]
    frames = read_video_frames(rec.path(synth_dataset, "video"))
    poses = PoseSequence.load(rec.path(synth_dataset, "keypoints"))
    wave = load_audio(rec.path(synth_dataset, "audio"), sample_rate=rec.sample_rate)
    d, c, offset = video_lse(expert, frames, poses, wave, rec.sample_rate)
    # The same windows as the validation's (which crops once to uint8): equal up to that rounding.
    ref_d, ref_c, ref_offset = lse_from_distances(offset_distances(*clip_embeddings(expert, clips, 0)))
    assert d == pytest.approx(ref_d, abs=2e-3) and c == pytest.approx(ref_c, abs=2e-3) and offset == ref_offset
    with pytest.raises(MmgtError, match="at least 6 frames"):
        video_lse(expert, frames[:5], poses[:5], wave, rec.sample_rate)


def test_expert_scorer_reads_the_clip_keypoints(synth_dataset, tmp_path):
    torch.manual_seed(0)
    LipSyncExpert.from_preset("tiny").save_pretrained(tmp_path / "expert")
    scorer = ExpertSyncScorer(tmp_path / "expert", synth_dataset, "test")
    rec = read_manifest(synth_dataset, "test")[0]
    frames = read_video_frames(rec.path(synth_dataset, "video"))
    wave = load_audio(rec.path(synth_dataset, "audio"), sample_rate=16000)
    poses = PoseSequence.load(rec.path(synth_dataset, "keypoints"))
    assert scorer(rec.id, frames, wave) == video_lse(scorer.expert, frames, poses, wave, 16000)
    assert "not syncnet_v2" in scorer.label
    with pytest.raises(MmgtError, match="has no keypoints"):
        scorer("elsewhere", frames, wave)


def test_eval_video_uses_the_expert_without_syncnet_v2(synth_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(weight_files, "locate", lambda spec, path=None: None)  # no syncnet_v2.model, even if packaged
    torch.manual_seed(0)
    LipSyncExpert.from_preset("tiny").save_pretrained(tmp_path / "expert")
    scorer = ExpertSyncScorer(tmp_path / "expert", synth_dataset, "test")
    generated = tmp_path / "generated"
    generated.mkdir()
    records = read_manifest(synth_dataset, "test")
    for rec in records:  # the real clips themselves stand in for generated videos
        shutil.copy(rec.path(synth_dataset, "video"), generated / f"{rec.id}.mp4")
    options = VideoEvalOptions(groups=("sync",), sync_expert=scorer, progress=False)
    report = video_report(synth_dataset, generated, split="test", options=options)
    metrics = {m.key: m for m in report.metrics}
    assert set(metrics) == {"sync_c", "sync_d"} and "not syncnet_v2" in metrics["sync_c"].implementation
    for key in ("sync_c", "sync_d"):  # generated == real videos: the same numbers on both sides
        assert metrics[key].values["generated"] == pytest.approx(metrics[key].reference, abs=1e-6)
    rec = records[0]
    frames = read_video_frames(rec.path(synth_dataset, "video"))
    wave = load_audio(rec.path(synth_dataset, "audio"), sample_rate=16000)
    d, c, _ = scorer(rec.id, frames, wave[: len(frames) * 640])
    assert metrics["sync_d"].per_clip["generated"][rec.id] == pytest.approx(d, abs=1e-6)
    assert any("not comparable" in note for note in report.notes)
