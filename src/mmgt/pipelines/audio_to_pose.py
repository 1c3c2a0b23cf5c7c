"""Stage I inference: audio of any length + a reference pose -> a pose sequence (SMGA, spec §3.6 and §6)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler
from diffusers.utils import BaseOutput

from mmgt.audio.features import feature_spec, librosa_start_tempo, stage1_audio_features
from mmgt.constants import FPS, LEGS, SAMPLE_RATE
from mmgt.contracts import PoseSequence
from mmgt.diffusion.stage1 import sample_window, select_motion
from mmgt.errors import MmgtError
from mmgt.models.gesture_denoiser import GestureDenoiser
from mmgt.pipelines.sampling_defaults import PoseSampling
from mmgt.pose.normalize import denormalize_pose, normalize_pose
from mmgt.pose.smoothing import blend_boundaries
from mmgt.utils.audio_io import Audio


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
    The audio-feature recipe (encoder description or the mel fallback), the normalisation, the target offset and the
    sampling defaults (:class:`~mmgt.pipelines.sampling_defaults.PoseSampling`) are stored in the pipeline config
    (``model_index.json``), so a saved folder describes itself.

    Example:
        >>> pipe = AudioToPosePipeline.from_pretrained("runs/stage1/tiny/final")  # doctest: +SKIP
        >>> out = pipe(Audio.load("speech.wav"), reference_pose)
        >>> out.poses.save("poses.npz")
    """

    _defaults = PoseSampling()

    def __init__(
        self,
        denoiser: GestureDenoiser,
        scheduler: DDIMScheduler,
        audio_features: dict | None = None,
        normalize_scores: bool = True,
        target_offset: int = 1,
        num_inference_steps: int = _defaults.num_inference_steps,
        guidance_scale: float = _defaults.guidance_scale,
        eta: float = _defaults.eta,
        sampler: str = _defaults.sampler,
    ):
        super().__init__()
        sampling = PoseSampling.from_config(locals())  # the sampling arguments above, checked
        self.register_modules(denoiser=denoiser, scheduler=scheduler)
        self.register_to_config(
            audio_features=audio_features or feature_spec(None),
            normalize_scores=normalize_scores,
            target_offset=target_offset,
            **sampling.to_dict(),
        )
        self.audio_encoder = None  # set with set_audio_encoder when the recipe names one

    @property
    def sampling(self) -> PoseSampling:
        """The sampling defaults saved with this pipeline."""
        return PoseSampling.from_config(self.config)

    def set_sampling(self, **changes) -> None:
        """Change the saved sampling defaults (``None`` keeps a value); they are written by ``save_pretrained``."""
        self.register_to_config(**self.sampling.override(**changes).to_dict())

    def set_audio_encoder(self, encoder) -> None:
        """Attach the speech encoder (``mmgt.audio.SpeechEncoder``) the recipe in ``config.audio_features`` names."""
        self.audio_encoder = encoder

    def check_inputs(self, audio: Audio, reference_pose: PoseSequence, num_candidates: int) -> None:
        """Raise :class:`MmgtError` naming the argument and the problem (:class:`Audio` checked the samples)."""
        if not isinstance(audio, Audio):
            raise MmgtError(f"audio must be an mmgt.utils.audio_io.Audio, got {type(audio).__name__}")
        if not isinstance(reference_pose, PoseSequence) or reference_pose.num_frames < 1:
            raise MmgtError("reference_pose must be a PoseSequence holding at least one frame")
        if num_candidates < 1:
            raise MmgtError(f"num_candidates must be >= 1, got {num_candidates}")
        speech = self.config.audio_features["speech"]
        if speech["type"] == "encoder" and self.audio_encoder is None:
            raise MmgtError(
                f"this model was trained with the speech encoder {speech.get('folder', speech)}; attach it with "
                "set_audio_encoder()"
            )

    def window_features(self, wave: np.ndarray, sample_rate: int, index: int, window: int) -> np.ndarray:
        """(W, D) features of window ``index``: frames index*W ... extracted on that span alone, zero-padded."""
        a, b = index * window * sample_rate // FPS, (index + 1) * window * sample_rate // FPS
        span = wave[a:b]
        span = np.pad(span, (0, (b - a) - len(span)))
        start_tempo = librosa_start_tempo(self.config.audio_features)
        return stage1_audio_features(span, sample_rate, self.audio_encoder, start_tempo)

    def sampling_scheduler(self, sampler: str):
        """The saved DDIM scheduler, or DPM-Solver++ built from its config (``sampler="dpm"``)."""
        if sampler == "dpm":
            return DPMSolverMultistepScheduler.from_config(self.scheduler.config, algorithm_type="dpmsolver++")
        return self.scheduler

    @torch.no_grad()
    def __call__(
        self,
        audio: Audio,
        reference_pose: PoseSequence,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        eta: float | None = None,
        sampler: str | None = None,
        generator: torch.Generator | None = None,
        num_candidates: int = 1,
        smooth_span: int = 5,
        smooth_anchors: int = 3,
        progress: bool = True,
    ) -> AudioToPosePipelineOutput:
        """Generate exactly ceil(duration * 25) pose frames for ``audio``.

        Every sampling argument left at ``None`` takes the value saved with the model (:attr:`sampling`).

        Args:
            audio: the speech (features are computed at the encoders' 16 kHz).
            reference_pose: the subject's pose (frame 0 is used), pixels of the reference image.
            num_inference_steps, guidance_scale, eta: sampler settings (spec §3.6: 50, 2, 1).
            sampler: ``"ddim"`` (the saved scheduler) or ``"dpm"`` (DPM-Solver++ from the same schedule).
            generator: seeds the initial noise (and the DDIM noise when eta > 0).
            num_candidates: motion selection among k candidates per window (1 = off; spec default 5 when on).
            smooth_span, smooth_anchors: cubic-spline blending at window boundaries (0 disables).
        """
        self.check_inputs(audio, reference_pose, num_candidates)
        sampling = self.sampling.override(**PoseSampling.values_in(locals()))  # None: the saved value
        speech = audio.at(SAMPLE_RATE)
        wave, sample_rate = speech.wave, speech.sample_rate
        scheduler = self.sampling_scheduler(sampling.sampler)
        cfg, denoiser = self.config, self.denoiser
        window = denoiser.config.window_frames
        device, dtype = denoiser.device, denoiser.dtype

        # 1. Reference pose -> normalised conditioning frame, legs removed.
        ref = without_legs(reference_pose[0])
        cond = torch.from_numpy(normalize_pose(ref, "fixed", cfg.normalize_scores)[0]).to(device, dtype)  # (K, 3)

        # 2. Contiguous windows from t = 0; the last one is zero-padded and trimmed afterwards.
        total = speech.num_frames
        num_windows = -(-total // window)
        chunks, previous = [], None
        for k in self.progress_bar(range(num_windows)) if progress else range(num_windows):
            # 3. Per-window audio features (the same extraction as in training).
            features = torch.from_numpy(self.window_features(wave, sample_rate, k, window)).to(device, dtype)
            features = features[None].expand(num_candidates, -1, -1)  # (k, W, D)
            # 4. Sample k candidates conditioned on the previous window's last frame and keep the best.
            x0 = sample_window(
                denoiser,
                scheduler,
                cond[None].expand(num_candidates, -1, -1),
                features,
                sampling.num_inference_steps,
                sampling.guidance_scale,
                sampling.eta,
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
