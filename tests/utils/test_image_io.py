"""mmgt.utils.image_io: any PIL image -> (H, W, 3) uint8 RGB (grey, alpha, 16 bit, EXIF), and failures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mmgt.errors import MediaError
from mmgt.utils.image_io import read_image


def test_text_file_as_image_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not pixels\n" * 50)
    with pytest.raises(MediaError, match=rf"^{tmp_path}/notes.png: not an image \(.+\)$"):
        read_image(tmp_path / "notes.png")


def test_read_image_grayscale_and_rgb(tmp_path: Path) -> None:
    gray = np.array([[0, 77], [200, 255]], np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=-1))

    rgb = np.arange(24, dtype=np.uint8).reshape(2, 4, 3) * 10
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_image(str(tmp_path / "c.png")), rgb)


def test_read_image_composites_alpha_onto_white(tmp_path: Path) -> None:
    rgba = np.array([[[200, 100, 0, 128], [10, 20, 30, 0], [10, 20, 30, 255]]], np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    # 200 * 128/255 + 255 * 127/255 = 227.4 -> 227; alpha 0 -> white; alpha 255 -> unchanged.
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), [[[227, 177, 127], [255, 255, 255], [10, 20, 30]]])

    Image.fromarray(np.array([[[50, 0], [50, 255]]], np.uint8), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), [[[255] * 3, [50] * 3]])

    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png", transparency=0)  # palette entry 0 (red) is transparent
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), [[[255, 255, 255], [0, 0, 255]]])


def test_read_image_scales_16_bit_to_8_bit(tmp_path: Path) -> None:
    gray16 = np.array([[0, 257 * 77], [51400, 65535]], np.uint16)  # 51400 / 257 = 200
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png")[..., 0], [[0, 77], [200, 255]])

    bgr16 = np.zeros((2, 2, 3), np.uint16)
    bgr16[...] = [2570, 32896, 65535]  # OpenCV order: B, G, R
    cv2.imwrite(str(tmp_path / "c16.png"), bgr16)
    np.testing.assert_array_equal(read_image(tmp_path / "c16.png"), np.full((2, 2, 3), [255, 128, 10]))


def test_read_image_applies_exif_orientation(tmp_path: Path) -> None:
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[:, 0] = 255  # a white left column
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "r.png", exif=exif)
    out = read_image(tmp_path / "r.png")
    assert out.shape == (4, 2, 3)
    np.testing.assert_array_equal(out[0, :, 0], [255, 255])  # the left column is now the top row
