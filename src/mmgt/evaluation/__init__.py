"""Evaluation layer (spec §9): pure metric functions, the metric networks, and the report they feed.

Feature extractors are kept apart from the metric functions:

* metric maths on arrays: :mod:`~mmgt.evaluation.frechet` (FID/FVD/FGD), :mod:`~mmgt.evaluation.image_quality`
  (PSNR/SSIM), :mod:`~mmgt.evaluation.keypoint_metrics`, :mod:`~mmgt.evaluation.sync`, :mod:`~.beat_align`,
  :mod:`~.diversity`, :mod:`~.hands` (HKC/HKV);
* networks in plain torch, loaded from local weight files (:mod:`~.weight_files`): :mod:`~.inception` (FID),
  :mod:`~.i3d` (FVD), :mod:`~.lpips`, :mod:`~.syncnet` (Sync-C/D, S3FD), :mod:`~.pose_autoencoder` (FGD);
* :mod:`~.video_eval` (``mmgt eval video``) and :mod:`~.report` (``metrics.json`` + ``report.md``).
"""

from mmgt.evaluation.beat_align import (
    BC_ORDER,
    BC_SIGMA_SECONDS,
    audio_onsets,
    beat_alignment,
    beat_alignment_score,
    kinematic_beats,
)
from mmgt.evaluation.diversity import diversity, pose_diversity
from mmgt.evaluation.frechet import frechet_distance, frechet_distance_from_features, gaussian_stats
from mmgt.evaluation.keypoint_metrics import UPPER_BODY, keypoint_l1, keypoint_l2, pck, pose_arrays
from mmgt.evaluation.sync import audio_envelope, lip_sync, lip_sync_score, mouth_opening

# The autoencoder pulls in torch and diffusers (seconds to import); the numpy metrics above should not pay for that.
_LAZY = {
    name: "mmgt.evaluation.pose_autoencoder"
    for name in (
        "FEATURE_KEYPOINTS",
        "PoseAutoencoder",
        "fgd",
        "normalize_for_autoencoder",
        "pose_features",
        "reconstruction_error",
        "sliding_windows",
        "train_pose_autoencoder",
    )
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BC_ORDER",
    "BC_SIGMA_SECONDS",
    "FEATURE_KEYPOINTS",
    "UPPER_BODY",
    "PoseAutoencoder",
    "audio_envelope",
    "audio_onsets",
    "beat_alignment",
    "beat_alignment_score",
    "diversity",
    "fgd",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "keypoint_l1",
    "keypoint_l2",
    "kinematic_beats",
    "lip_sync",
    "lip_sync_score",
    "mouth_opening",
    "normalize_for_autoencoder",
    "pck",
    "pose_arrays",
    "pose_diversity",
    "pose_features",
    "reconstruction_error",
    "sliding_windows",
    "train_pose_autoencoder",
]
