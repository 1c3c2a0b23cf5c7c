"""Data contracts: small frozen dataclasses that validate themselves (STYLE §4.10 example 10)."""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmgt.constants import FPS, NUM_KEYPOINTS, VISIBILITY_THRESHOLD
from mmgt.errors import MediaError

POSE_FORMAT_VERSION = 1
POSE_LAYOUT_NAME = "mmgt-wholebody-134"


@dataclass(frozen=True, eq=False)
class PoseSequence:
    """A 2D whole-body pose sequence in the 134-keypoint layout of :mod:`mmgt.constants`.

    Attributes:
        keypoints: (F, K, 2) float32 pixel coordinates (x right, y down) in an image of ``width`` x ``height``.
            Coordinates of invisible points are arbitrary (conventionally 0).
        scores: (F, K) float32 detector confidences in [0, 1]; a point is visible if its score > 0.3.
        width, height: size in pixels of the image the coordinates refer to.
        fps: frames per second of the sequence.

    On disk (``.npz``, format version 1): ``format_version`` (int), ``layout`` (str, "mmgt-wholebody-134"),
    ``keypoints`` (F, K, 2) float32, ``scores`` (F, K) float32, ``image_size`` (2,) int [width, height],
    ``fps`` (float).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    width: int
    height: int
    fps: float = FPS
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints, dtype=np.float32)
        sc = np.asarray(self.scores, dtype=np.float32)
        if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 2):
            raise ValueError(f"keypoints must have shape (F, {NUM_KEYPOINTS}, 2), got {kp.shape}")
        if sc.shape != kp.shape[:2]:
            raise ValueError(f"scores must have shape {kp.shape[:2]}, got {sc.shape}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not (np.isfinite(kp).all() and np.isfinite(sc).all()):
            raise ValueError("keypoints and scores must be finite")
        object.__setattr__(self, "keypoints", kp)
        object.__setattr__(self, "scores", sc)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "fps", float(self.fps))

    # -- views --------------------------------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return self.keypoints.shape[0]

    def __len__(self) -> int:
        return self.num_frames

    def visible(self, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
        """(F, K) bool: score above ``threshold``."""
        return self.scores > threshold

    def as_array(self) -> np.ndarray:
        """(F, K, 3) float32 [x_px, y_px, score]."""
        return np.concatenate([self.keypoints, self.scores[..., None]], axis=-1)

    def __getitem__(self, index: slice | int) -> PoseSequence:
        """Frames ``index`` as a new sequence (an int gives a one-frame sequence)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return self.replace(keypoints=self.keypoints[index], scores=self.scores[index])

    def replace(self, **changes) -> PoseSequence:
        fields = dict(keypoints=self.keypoints, scores=self.scores, width=self.width, height=self.height, fps=self.fps)
        fields.update(changes)
        return PoseSequence(**fields)

    @staticmethod
    def concatenate(parts: list[PoseSequence]) -> PoseSequence:
        """Concatenate sequences along time; all must share image size and fps."""
        if not parts:
            raise ValueError("cannot concatenate an empty list of pose sequences")
        first = parts[0]
        for p in parts[1:]:
            if (p.width, p.height, p.fps) != (first.width, first.height, first.fps):
                raise ValueError(
                    f"cannot concatenate poses of {p.width}x{p.height}@{p.fps} and {first.width}x{first.height}"
                    f"@{first.fps}"
                )
        return first.replace(
            keypoints=np.concatenate([p.keypoints for p in parts]), scores=np.concatenate([p.scores for p in parts])
        )

    def rescaled(self, width: int, height: int) -> PoseSequence:
        """The same poses in an image of ``width`` x ``height`` (coordinates scaled per axis)."""
        scale = np.array([width / self.width, height / self.height], dtype=np.float32)
        return self.replace(keypoints=self.keypoints * scale, width=width, height=height)

    # -- I/O ----------------------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the documented ``.npz`` schema atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "format_version": np.int64(POSE_FORMAT_VERSION),
            "layout": np.array(POSE_LAYOUT_NAME),
            "keypoints": self.keypoints,
            "scores": self.scores,
            "image_size": np.array([self.width, self.height], dtype=np.int64),
            "fps": np.float64(self.fps),
        }
        fd, tmp = tempfile.mkstemp(suffix=".npz", prefix=f".{path.stem}-", dir=path.parent)
        try:
            # A zip with fixed entry dates (np.savez stamps the current time): the same poses give the same bytes,
            # so dataset checksums are reproducible.
            with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, value in arrays.items():
                    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with zf.open(info, "w") as entry:
                        np.lib.format.write_array(entry, np.asanyarray(value), allow_pickle=False)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; pose files are ordinary data files
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PoseSequence:
        """Read a file written by :meth:`save`; raises :class:`MediaError` naming the file on any problem."""
        path = Path(path)
        if not path.is_file():
            raise MediaError(f"{path}: pose file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                version = int(z["format_version"])
                if version > POSE_FORMAT_VERSION:
                    raise MediaError(
                        f"{path}: pose format version {version} is newer than supported ({POSE_FORMAT_VERSION})"
                    )
                layout = str(z["layout"])
                if layout != POSE_LAYOUT_NAME:
                    raise MediaError(f"{path}: unknown keypoint layout {layout!r}")
                width, height = (int(v) for v in z["image_size"])
                return cls(z["keypoints"], z["scores"], width, height, float(z["fps"]))
        except MediaError:
            raise
        except (OSError, KeyError, ValueError, EOFError) as e:
            raise MediaError(f"{path}: not a valid mmgt pose file ({e})") from e
