"""Reading still images as 8-bit RGB: EXIF orientation, grayscale, 16-bit and transparency handled in one place."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmgt.errors import MediaError
from mmgt.utils.files import check_input_file, error_summary

_PIL_16BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_PIL_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB.

    EXIF orientation is applied. Grayscale is repeated to three channels; 16-bit images are scaled to 8 bits
    (65535 -> 255); images with transparency (RGBA, LA, P with a transparent colour) are composited onto white.

    Raises:
        MediaError: the file is missing, empty, truncated or not an image PIL can decode.
    """
    path = check_input_file(path)
    try:
        with Image.open(path) as image:
            image.load()  # PIL opens lazily: decode now so a truncated file fails here
            return _image_to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        problem = "truncated image" if "truncated" in str(e) else "not an image"
        raise MediaError(f"{path}: {problem} ({error_summary(e, path)})") from e


def _image_to_rgb(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any PIL mode."""
    if image.mode in _PIL_16BIT_MODES:
        # 16-bit grayscale (PIL opens 16-bit PNG/TIFF as "I;16" or "I"): 65535 -> 255.
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "F":
        # Float images follow PIL's own convert("L"): values are taken as 0..255.
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode in _PIL_ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        alpha = rgba[..., 3:]
        # Composite onto white in integers: rgb * a + 255 * (1 - a), rounded.
        return ((rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
