"""Stage I inference: audio of any length + a reference pose -> a pose sequence (SMGA, spec §3.6 and §6)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler
from diffusers.utils import BaseOutput

from mmgt.audio.features import feature_spec, stage1_audio_features
from mmgt.constants import FPS, LEGS, num_frames_for
from mmgt.contracts import PoseSequence
from mmgt.diffusion.sampling import sample_window, select_motion
from mmgt.models.gesture_denoiser import GestureDenoiser
from mmgt.pose.normalize import denormalize_pose, normalize_pose
from mmgt.pose.smoothing import blend_boundaries


@dataclass
class AudioToPosePipelineOutput(BaseOutput):
    """``poses``: the generated PoseSequence (T frames, pixels of the reference size);
    ``keypoints``: (T, K, 3) float32 normalised model output."""

    poses: PoseSequence
    keypoints: np.ndarray


def without_legs(pose: PoseSequence) -> PoseSequence:
    """Knees and ankles removed (score 0, coordinates 0): spec §2 "legs are removed"."""
    kp, sc = pose.keypoints.copy(), pose.scores.copy()
    kp[:, list(LEGS)] = 0.0
    sc[:, list(LEGS)] = 0.0
    return pose.replace(keypoints=kp, scores=sc)


class AudioToPosePipeline(DiffusionPipeline):
    """SMGA sampler for any audio length.

    Components: ``denoiser`` (:class:`GestureDenoiser`), ``scheduler`` (DDIM, cosine schedule, x0 prediction).
    The audio-feature recipe (encoder description or the mel fallback), the normalisation and the target offset are
    stored in the pipeline config (``model_index.json``), so a saved folder describes itself.

    Example:
        >>> pipe = AudioToPosePipeline.from_pretrained("runs/stage1/tiny/final")
        >>> out = pipe(wave, 16000, reference_pose, num_inference_steps=50, guidance_scale=2.0)
        >>> out.poses.save("poses.npz")
    """

    def __init__(
        self,
        denoiser: GestureDenoiser,
        scheduler: DDIMScheduler,
        audio_features: dict | None = None,
        normalize_scores: bool = True,
        target_offset: int = 1,
    ):
        super().__init__()
        self.register_modules(denoiser=denoiser, scheduler=scheduler)
        self.register_to_config(
            audio_features=audio_features or feature_spec(None),
            normalize_scores=normalize_scores,
            target_offset=target_offset,
        )
        self.audio_encoder = None  # set with set_audio_encoder when the recipe names one

    def set_audio_encoder(self, encoder) -> None:
        """Attach the speech encoder (``mmgt.audio.SpeechEncoder``) the recipe in ``config.audio_features`` names."""
        self.audio_encoder = encoder

    def check_inputs(
        self,
        wave: np.ndarray,
        sample_rate: int,
        reference_pose: PoseSequence,
        num_inference_steps: int,
        num_candidates: int,
    ) -> None:
        if wave.ndim != 1 or len(wave) == 0:
            raise ValueError(f"audio must be a non-empty mono waveform, got shape {wave.shape}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if reference_pose.num_frames < 1:
            raise ValueError("reference_pose must hold at least one frame")
        if num_inference_steps < 1 or num_candidates < 1:
            raise ValueError(
                f"num_inference_steps and num_candidates must be >= 1, got {num_inference_steps}, {num_candidates}"
            )
        speech = self.config.audio_features["speech"]
        if speech["type"] == "encoder" and self.audio_encoder is None:
            raise ValueError(
                f"this model was trained with the speech encoder {speech.get('folder', speech)}; attach it with "
                "set_audio_encoder()"
            )

    def window_features(self, wave: np.ndarray, sample_rate: int, index: int, window: int) -> np.ndarray:
        """(W, D) features of window ``index``: frames index*W ... extracted on that span alone, zero-padded."""
        a, b = index * window * sample_rate // FPS, (index + 1) * window * sample_rate // FPS
        span = wave[a:b]
        span = np.pad(span, (0, (b - a) - len(span)))
        return stage1_audio_features(span, sample_rate, self.audio_encoder)

    @torch.no_grad()
    def __call__(
        self,
        wave: np.ndarray,
        sample_rate: int,
        reference_pose: PoseSequence,
        num_inference_steps: int = 50,
        guidance_scale: float = 2.0,
        eta: float = 1.0,
        generator: torch.Generator | None = None,
        num_candidates: int = 1,
        smooth_span: int = 5,
        smooth_anchors: int = 3,
        progress: bool = True,
    ) -> AudioToPosePipelineOutput:
        """Generate exactly ceil(duration * 25) pose frames for ``wave``.

        Args:
            wave: (N,) float32 mono audio; sample_rate: its rate (16 kHz expected by the speech encoders).
            reference_pose: the subject's pose (frame 0 is used), pixels of the reference image.
            num_inference_steps, guidance_scale, eta: sampler settings (spec §3.6: 50, 2, 1).
            generator: seeds the initial noise (and the DDIM noise when eta > 0).
            num_candidates: motion selection among k candidates per window (1 = off; spec default 5 when on).
            smooth_span, smooth_anchors: cubic-spline blending at window boundaries (0 disables).
        """
        wave = np.asarray(wave, dtype=np.float32)
        self.check_inputs(wave, sample_rate, reference_pose, num_inference_steps, num_candidates)
        cfg, denoiser = self.config, self.denoiser
        window = denoiser.config.window_frames
        device, dtype = denoiser.device, denoiser.dtype

        # 1. Reference pose -> normalised conditioning frame, legs removed.
        ref = without_legs(reference_pose[0])
        cond = torch.from_numpy(normalize_pose(ref, "fixed", cfg.normalize_scores)[0]).to(device, dtype)  # (K, 3)

        # 2. Contiguous windows from t = 0; the last one is zero-padded and trimmed afterwards.
        total = num_frames_for(len(wave), sample_rate)
        num_windows = -(-total // window)
        self.scheduler.set_timesteps(num_inference_steps)
        chunks, previous = [], None
        for k in self.progress_bar(range(num_windows)) if progress else range(num_windows):
            # 3. Per-window audio features (the same extraction as in training).
            audio = torch.from_numpy(self.window_features(wave, sample_rate, k, window)).to(device, dtype)
            audio = audio[None].expand(num_candidates, -1, -1)  # (k, W, D)
            # 4. Sample k candidates conditioned on the previous window's last frame and keep the best.
            x0 = sample_window(
                denoiser,
                self.scheduler,
                cond[None].expand(num_candidates, -1, -1),
                audio,
                num_inference_steps,
                guidance_scale,
                eta,
                generator,
            )  # (k, W, K, 3)
            best = 0 if previous is None or num_candidates == 1 else int(select_motion(x0[:, None], previous[None])[0])
            chosen = x0[best]  # (W, K, 3)
            chunks.append(chosen.float().cpu().numpy())
            cond, previous = chosen[-1], chosen[-5:]

        # 5. Concatenate and trim to exactly T frames.
        keypoints = np.concatenate(chunks)[:total]  # (T, K, 3)
        # 6. Spline-smooth across window boundaries (multiples of the window length).
        if smooth_span > 0 and num_windows > 1:
            boundaries = [b for b in range(window, total, window)]
            keypoints = blend_boundaries(keypoints, boundaries, span=smooth_span, anchors=smooth_anchors)
        # 7. Back to pixels of the reference image; legs stay removed.
        poses = denormalize_pose(keypoints, ref.width, ref.height, "fixed", cfg.normalize_scores, fps=FPS)
        return AudioToPosePipelineOutput(poses=without_legs(poses), keypoints=keypoints.astype(np.float32))


def make_sampling_scheduler(pipe: AudioToPosePipeline, sampler: str = "ddim"):
    """The pipeline's scheduler, or DPM-Solver++ built from the same config (``sampler="dpm"``)."""
    if sampler == "ddim":
        return pipe.scheduler
    if sampler == "dpm":
        return DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    raise ValueError(f"unknown sampler {sampler!r}; expected 'ddim' or 'dpm'")
