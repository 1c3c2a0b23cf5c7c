"""The SMGA training loss: position, velocity and acceleration MSE, plus the same three on the face, x3 (spec §3.5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mmgt.errors import MmgtError


def _pos_vel_acc(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MSE of x, Δx and Δ²x along frames (axis 1), each a mean over all elements."""
    pred_vel, target_vel = pred.diff(dim=1), target.diff(dim=1)  # Δx[k] = x[k+1] - x[k]: (B, F-1, K, 3)
    pos = F.mse_loss(pred, target)
    vel = F.mse_loss(pred_vel, target_vel)
    acc = F.mse_loss(pred_vel.diff(dim=1), target_vel.diff(dim=1))  # Δ² = Δ∘Δ: (B, F-2, K, 3)
    return pos, vel, acc


def smga_loss(
    pred: torch.Tensor, target: torch.Tensor, face_indices: Sequence[int], face_weight: float = 3.0
) -> dict[str, torch.Tensor]:
    """L_SMGA = MSE(x̂0, x0) + MSE(Δx̂0, Δx0) + MSE(Δ²x̂0, Δ²x0) + face_weight * [the same on the face keypoints].

    Official code: the face terms use keypoints 24-91 (frame-vector dims 72-275) with weight 3; there is no mask loss.

    Args:
        pred: (B, F, K, 3) predicted x̂0, F >= 3.
        target: (B, F, K, 3) ground-truth x0.
        face_indices: keypoint indices of the face (e.g. ``model.config.face_indices``).
        face_weight: weight of the three face terms.

    Returns:
        Named scalar terms "pos", "vel", "acc", "face_pos", "face_vel", "face_acc" (unweighted, for logging) and
        "loss", the weighted total to back-propagate.
    """
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise MmgtError(
            f"pred and target must share a (B, F, K, 3) shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.shape[1] < 3:
        raise MmgtError(f"smga_loss needs at least 3 frames for the acceleration term, got F={pred.shape[1]}")
    face = torch.as_tensor(list(face_indices), dtype=torch.long, device=pred.device)
    if face.numel() == 0 or int(face.min()) < 0 or int(face.max()) >= pred.shape[2]:
        raise MmgtError(f"face_indices must be non-empty and within [0, {pred.shape[2]}), got {face.tolist()}")
    pos, vel, acc = _pos_vel_acc(pred, target)
    face_pos, face_vel, face_acc = _pos_vel_acc(pred.index_select(2, face), target.index_select(2, face))
    loss = pos + vel + acc + face_weight * (face_pos + face_vel + face_acc)
    return dict(loss=loss, pos=pos, vel=vel, acc=acc, face_pos=face_pos, face_vel=face_vel, face_acc=face_acc)
