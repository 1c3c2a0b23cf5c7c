"""The lip-sync expert's inputs from an mmgt dataset: head-fixed mouth squares and crops, audio features, windows.

One place defines what the expert sees (:mod:`mmgt.models.lipsync`), for its training (``mmgt train syncnet``), its
validation and the stage-2 video step's sync loss:

* mouth squares: :func:`mmgt.evaluation.video_regions.mouth_squares` of the clip's poses at the frame size (the
  mouth-activity measure's window), sampled by :func:`mmgt.models.lipsync.crop_mouths`;
* audio: :func:`mmgt.audio.mel.mel_features` of the clip's wave, one row per video frame;
* a window starting at frame t: frames t..t+4 and audio rows t..t+4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from mmgt.audio.mel import mel_features
from mmgt.constants import SAMPLE_RATE
from mmgt.contracts import PoseSequence
from mmgt.data.manifest import ClipRecord, read_manifest
from mmgt.errors import MmgtError
from mmgt.evaluation.syncnet import lse_from_distances, offset_distances
from mmgt.evaluation.video_regions import mouth_squares
from mmgt.models.lipsync import LIP_FRAMES, LipSyncExpert, crop_mouths
from mmgt.utils.audio_io import load_audio
from mmgt.utils.video_io import read_video_frames

EVAL_MIN_SHIFT = 5  # the acceptance's negatives: audio shifted by 5..15 frames
EVAL_MAX_SHIFT = 15
OFFSET_TOLERANCE = 1  # an AV offset found within +-1 frame of 0 counts as right


class SyncClips:
    """Per-clip mouth squares, audio features and (for training) mouth crops of a dataset's clips, computed once.

    Args:
        root: the dataset folder.
        split: its split (ignored when ``records`` is given).
        records: the clips to use, e.g. a stage-2 dataset's records (their order defines the clip indices).
        crop_size: the expert's crop side; ``jitter`` extra pixels each way are kept around each crop for shifts.
        vae: a frozen AutoencoderKL (the stage-2 model's): ``decoded=True`` crops come from the frames passed through
            it (encode -> posterior mean -> decode), the domain of the video step's decoded x0 predictions.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        records: list[ClipRecord] | None = None,
        crop_size: int = 32,
        jitter: int = 0,
        vae: AutoencoderKL | None = None,
    ):
        self.root = Path(root)
        self.records = read_manifest(self.root, split) if records is None else list(records)
        if not self.records:
            raise MmgtError(f"{self.root}: no clips in split {split!r}")
        self.index = {rec.id: i for i, rec in enumerate(self.records)}
        self.crop_size, self.jitter, self.vae = crop_size, jitter, vae
        self._audio: dict[int, np.ndarray] = {}
        self._poses: dict[int, PoseSequence] = {}
        self._crops: dict[tuple[int, bool], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.records)

    def num_frames(self, clip: int) -> int:
        """Frames with both video and audio."""
        return min(self.records[clip].num_frames, len(self.audio(clip)))

    def audio(self, clip: int) -> np.ndarray:
        """(T, 81) float32 audio features, one row per video frame."""
        if clip not in self._audio:
            rec = self.records[clip]
            wave = load_audio(rec.path(self.root, "audio"), sample_rate=rec.sample_rate)
            self._audio[clip] = mel_features(wave, rec.sample_rate).astype(np.float32)
        return self._audio[clip]

    def squares(self, clip: int, height: int, width: int) -> np.ndarray:
        """(F, 7) float32 head-fixed mouth squares of the clip's frames resized to ``height`` x ``width``.

        Frames where the face is not seen take the nearest seen frame's square.

        Raises:
            MmgtError: the lips, nose or eye corners are seen in no frame.
        """
        if clip not in self._poses:
            self._poses[clip] = PoseSequence.load(self.records[clip].path(self.root, "keypoints"))
        squares = mouth_squares(self._poses[clip], height, width)
        seen = np.flatnonzero(np.isfinite(squares).all(axis=1))
        if not len(seen):
            raise MmgtError(f"{self.records[clip].id}: no frame shows the lips, nose and eye corners")
        nearest = seen[np.abs(np.arange(len(squares))[:, None] - seen[None]).argmin(axis=1)]
        return squares[nearest].astype(np.float32)

    def crops(self, clip: int, decoded: bool = False) -> torch.Tensor:
        """(F, 3, S + 2J, S + 2J) uint8 mouth crops with ``jitter`` J pixels of margin (the centre S² is the crop).

        ``decoded``: crops of the frames after the VAE round trip (needs ``vae``).
        """
        key = (clip, decoded)
        if key not in self._crops:
            frames = read_video_frames(self.records[clip].path(self.root, "video"))  # (F, H, W, 3) uint8
            squares = torch.from_numpy(self.squares(clip, *frames.shape[1:3]))
            side = self.crop_size + 2 * self.jitter
            squares[:, 6] *= side / self.crop_size  # the same pixel scale, a wider square
            pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
            chunks = range(0, len(frames), 25)
            if decoded:
                pixels = torch.cat([self._round_trip(pixels[i : i + 25]) for i in chunks])
            crops = torch.cat([crop_mouths(pixels[i : i + 25], squares[i : i + 25], side) for i in chunks])
            self._crops[key] = crops.round().clamp(0, 255).to(torch.uint8)
        return self._crops[key]

    @torch.no_grad()
    def _round_trip(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float pixels in [0, 255] -> the VAE's reconstruction of them, same shape and scale."""
        if self.vae is None:
            raise MmgtError("decoded mouth crops need a VAE (SyncNetData.vae)")
        p = next(self.vae.parameters())
        x = pixels.to(p.device, p.dtype).div(127.5).sub(1.0)
        out = self.vae.decode(self.vae.encode(x).latent_dist.mean).sample
        return out.float().cpu().clamp(-1.0, 1.0).add(1.0).mul(127.5)

    def window_crops(
        self, clip: int, start: int, dy: int | None = None, dx: int | None = None, decoded: bool = False
    ) -> torch.Tensor:
        """(3, 5, S, S) float32 in [-1, 1]: frames start..start+4; (dy, dx) place the crop in the margin (centre)."""
        j, s = self.jitter, self.crop_size
        dy, dx = (j if dy is None else dy), (j if dx is None else dx)
        crops = self.crops(clip, decoded)[start : start + 5, :, dy : dy + s, dx : dx + s]
        return crops.float().div(127.5).sub(1.0).permute(1, 0, 2, 3)

    def window_audio(self, clip: int, start: int, frames: int = 5) -> torch.Tensor:
        """(frames, 81) float32 audio rows start..start+frames-1 (the last row repeated past the end)."""
        audio = self.audio(clip)
        rows = np.minimum(np.arange(start, start + frames), len(audio) - 1)
        return torch.from_numpy(audio[rows])


def training_batch(clips: SyncClips, rng: np.random.Generator, batch_size: int, data) -> dict[str, torch.Tensor]:
    """One batch of windows: half in sync, half with shifted audio or another clip's (``data``: a SyncNetData).

    With ``clips.vae`` set, each window's frames are the VAE's reconstructions with probability ``data.vae_prob``
    (drawn only then, so a run without a VAE draws exactly what it did before the option).

    Returns:
        ``crops`` (B, 3, 5, S, S) in [-1, 1], ``audio`` (B, 5, 81), ``labels`` (B,) 1.0 in sync / 0.0, and where
        each came from: ``windows`` (B, 4) long rows (clip, start, audio clip, audio start).
    """
    crops, audio, labels, windows = [], [], [], []
    for _ in range(batch_size):
        clip = int(rng.integers(len(clips)))
        last = clips.num_frames(clip) - 5
        start = int(rng.integers(0, last + 1))
        positive = rng.random() < 0.5
        audio_clip, audio_start = clip, start
        shifts = [s for s in range(-data.max_shift, data.max_shift + 1) if abs(s) >= data.min_shift]
        shifts = [s for s in shifts if 0 <= start + s <= last]
        if not positive and (len(clips) > 1 and (rng.random() < data.other_clip_prob or not shifts)):
            audio_clip = (clip + 1 + int(rng.integers(len(clips) - 1))) % len(clips)
            audio_start = int(rng.integers(0, clips.num_frames(audio_clip) - 5 + 1))
        elif not positive:
            if not shifts:
                raise MmgtError(f"{clips.records[clip].id}: too short for a shifted negative")
            audio_start = start + int(rng.choice(shifts))
        dy, dx = (int(v) for v in rng.integers(0, 2 * clips.jitter + 1, size=2))
        decoded = clips.vae is not None and bool(rng.random() < data.vae_prob)
        window = clips.window_crops(clip, start, dy, dx, decoded)
        gain = 1.0 + rng.uniform(-data.gain, data.gain)
        bias = rng.uniform(-data.gain / 2, data.gain / 2)
        crops.append((window * gain + bias).clamp(-1, 1))
        audio.append(clips.window_audio(audio_clip, audio_start))
        labels.append(float(positive))
        windows.append((clip, start, audio_clip, audio_start))
    return {
        "crops": torch.stack(crops),
        "audio": torch.stack(audio),
        "labels": torch.tensor(labels),
        "windows": torch.tensor(windows),
    }


@torch.no_grad()
def clip_embeddings(
    expert: LipSyncExpert, clips: SyncClips, clip: int, decoded: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Video and audio embeddings (T, E) of every 5-frame window t = 0..F-5 of a clip (centred crops)."""
    p = next(expert.parameters())
    starts = range(clips.num_frames(clip) - 4)
    crops = torch.stack([clips.window_crops(clip, t, decoded=decoded) for t in starts]).to(p.device, p.dtype)
    audio = torch.stack([clips.window_audio(clip, t) for t in starts]).to(p.device, p.dtype)
    return expert.video_embedding(crops).float().cpu(), expert.audio_embedding(audio).float().cpu()


@torch.no_grad()
def video_lse(
    expert: LipSyncExpert, frames: np.ndarray, poses: PoseSequence, wave: np.ndarray, sample_rate: int
) -> tuple[float, float, int]:
    """Sync-D, Sync-C and the AV offset of one video with the expert (LSE's definitions, ``mmgt.evaluation.syncnet``).

    Args:
        expert: a trained expert.
        frames: (F, H, W, 3) uint8 RGB video at 25 fps (generated or real).
        poses: the F poses the video follows (the mouth squares come from them, as in training).
        wave: (S,) mono audio aligned with frame 0.
        sample_rate: its rate in Hz.

    Returns:
        ``(sync_d, sync_c, offset)``; offset > 0: the audio leads.

    Raises:
        MmgtError: fewer than 6 frames, or no frame shows the lips, nose and eye corners.
    """
    audio = mel_features(wave, sample_rate).astype(np.float32)
    count = min(len(frames), poses.num_frames, len(audio))
    if count < 6:
        raise MmgtError(f"Sync-C/D with the lip-sync expert needs at least 6 frames of video and audio, got {count}")
    squares = mouth_squares(poses[:count], *frames.shape[1:3])
    seen = np.flatnonzero(np.isfinite(squares).all(axis=1))
    if not len(seen):
        raise MmgtError("no frame shows the lips, nose and eye corners: no mouth crops for the lip-sync expert")
    squares = squares[seen[np.abs(np.arange(count)[:, None] - seen[None]).argmin(axis=1)]]  # nearest seen frame
    p = next(expert.parameters())
    pixels = torch.from_numpy(np.ascontiguousarray(frames[:count])).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    crops = crop_mouths(pixels, torch.from_numpy(squares).float(), expert.config.crop_size)  # (F, 3, S, S)
    starts = range(count - LIP_FRAMES + 1)
    windows = torch.stack([crops[t : t + LIP_FRAMES].transpose(0, 1) for t in starts]).to(p.device, p.dtype)
    sounds = torch.stack([torch.from_numpy(audio[t : t + LIP_FRAMES]) for t in starts]).to(p.device, p.dtype)
    video_emb, audio_emb = expert.video_embedding(windows).float().cpu(), expert.audio_embedding(sounds).float().cpu()
    return lse_from_distances(offset_distances(video_emb, audio_emb))


@torch.no_grad()
def sync_accuracy(expert: LipSyncExpert, clips: SyncClips, decoded: bool = False) -> dict[str, float]:
    """The acceptance measures of an expert on real clips (``decoded``: on their VAE reconstructions).

    * ``acc``: balanced accuracy of "in sync" (logit > 0) over every window in sync and every window with its audio
      shifted by 5..15 frames either way (``pos_acc`` and ``neg_acc`` separately);
    * ``offset_acc``: share of clips whose AV offset (LSE's argmin over -15..15 frames) is 0 +- 1;
    * ``sync_d``, ``sync_c``: mean LSE-D / LSE-C of the clips with this expert's embeddings.
    """
    was_training = expert.training
    expert.eval()
    pos, neg, offsets, lse_d, lse_c = [], [], [], [], []
    for clip in range(len(clips)):
        video, audio = clip_embeddings(expert, clips, clip, decoded)  # (T, E) each
        logits = expert.logits(video[:, None].to(expert.logit_scale.device), audio[None].to(expert.logit_scale.device))
        logits = logits.float().cpu()  # (T, T): window t's video against window u's audio
        shift = torch.arange(len(video))[None] - torch.arange(len(video))[:, None]  # u - t
        far = (shift.abs() >= EVAL_MIN_SHIFT) & (shift.abs() <= EVAL_MAX_SHIFT)
        pos.append((logits.diagonal() > 0).float())
        neg.append((logits[far] <= 0).float())
        d, c, offset = lse_from_distances(offset_distances(video, audio))
        offsets.append(offset)
        lse_d.append(d)
        lse_c.append(c)
    expert.train(was_training)
    pos_acc, neg_acc = float(torch.cat(pos).mean()), float(torch.cat(neg).mean())
    return {
        "acc": (pos_acc + neg_acc) / 2,
        "pos_acc": pos_acc,
        "neg_acc": neg_acc,
        "offset_acc": float(np.mean(np.abs(offsets) <= OFFSET_TOLERANCE)),
        "sync_d": float(np.mean(lse_d)),
        "sync_c": float(np.mean(lse_c)),
    }


class ExpertSyncScorer:
    """Sync-C/D of a dataset's clips with a trained lip-sync expert, for ``mmgt eval video`` without syncnet_v2.

    Called with a clip id, its (F, H, W, 3) uint8 frames (real or generated: stage 2 follows the clip's poses) and
    its 16 kHz speech, it returns ``(sync_d, sync_c, offset)`` (:func:`video_lse`); the mouth squares come from the
    clip's keypoints in the dataset. The numbers are on this expert's scale, not syncnet_v2's (``label`` says so).

    Args:
        folder: a ``mmgt train syncnet`` export.
        root: the dataset folder of the real clips.
        split: its split.
    """

    def __init__(self, folder: str | Path, root: str | Path, split: str = "test"):
        self.folder = Path(folder)
        self.expert = LipSyncExpert.from_pretrained(self.folder).eval()
        self.keypoints = {rec.id: rec.path(Path(root), "keypoints") for rec in read_manifest(root, split)}
        self.label = f"mmgt lip-sync expert {self.folder} (head-fixed mouth crops, log-mel audio; not syncnet_v2)"

    def __call__(self, clip_id: str, frames: np.ndarray, wave: np.ndarray) -> tuple[float, float, int]:
        if clip_id not in self.keypoints:
            raise MmgtError(f"clip {clip_id!r} has no keypoints in the dataset: the lip-sync expert cannot crop it")
        return video_lse(self.expert, frames, PoseSequence.load(self.keypoints[clip_id]), wave, SAMPLE_RATE)
