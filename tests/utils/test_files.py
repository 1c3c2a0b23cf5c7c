"""mmgt.utils.files: atomic outputs leave either the complete file or nothing; hashing; input checks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mmgt.errors import MediaError, MmgtError
from mmgt.utils.files import (
    atomic_output,
    check_input_file,
    error_summary,
    make_output_dir,
    sha256_file,
    temp_path_for,
)


def test_atomic_output_renames_on_success(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "clip.mp4"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and target.parent.is_dir()  # same folder: os.replace is atomic
        assert tmp.name.startswith(".clip.") and tmp.suffix == ".mp4"  # hidden, keeps the container suffix
        assert not tmp.exists()
        tmp.write_bytes(b"frames")
        assert not target.exists()  # nothing at the final name until the block ends
    assert target.read_bytes() == b"frames"
    assert os.listdir(target.parent) == ["clip.mp4"]


def test_atomic_output_custom_suffix(tmp_path: Path) -> None:
    with atomic_output(tmp_path / "weights", suffix=".safetensors") as tmp:
        assert tmp.suffix == ".safetensors"
        tmp.write_text("x")
    assert (tmp_path / "weights").read_text() == "x"


def test_atomic_output_failure_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    target.write_bytes(b"old")
    with pytest.raises(KeyError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half written")
            raise KeyError("encoder crashed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.wav"]


def test_atomic_output_without_writing_raises(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="out.npz: nothing was written"):
        with atomic_output(tmp_path / "out.npz"):
            pass
    assert os.listdir(tmp_path) == []


def test_temp_names_are_unique(tmp_path: Path) -> None:
    names = {temp_path_for(tmp_path / "a.mp4") for _ in range(50)}
    assert len(names) == 50


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "abc.bin"
    path.write_bytes(b"abc")
    # FIPS 180-2 test vector for "abc".
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    data = bytes(range(256)) * 1000
    path.write_bytes(data)
    assert sha256_file(str(path), chunk=7) == sha256_file(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(MediaError, match="missing.bin: file not found"):
        sha256_file(tmp_path / "missing.bin")
    with pytest.raises(MediaError, match=f"{tmp_path.name}: not a file"):
        sha256_file(tmp_path)


def test_check_input_file(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF")
    assert check_input_file(str(path)) == path
    with pytest.raises(MediaError, match="b.wav: file not found"):
        check_input_file(tmp_path / "b.wav")
    with pytest.raises(MediaError, match=f"{tmp_path.name}: not a file"):
        check_input_file(tmp_path)
    path.write_bytes(b"")
    with pytest.raises(MediaError, match=r"a.wav: file is empty \(0 bytes\)"):
        check_input_file(path)


def test_error_summary_is_one_short_line_without_the_path() -> None:
    exc = OSError("[Errno 1094995529] Invalid data found\n  when processing input: '/x/a.mp4'")
    assert error_summary(exc, "/x/a.mp4") == "Invalid data found when processing input"
    assert error_summary(ValueError("")) == "ValueError"
    long = error_summary(RuntimeError("y" * 500))
    assert len(long) == 200 and long.endswith("...")


def test_make_output_dir_creates_checks_and_refuses_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert make_output_dir(target) == target and target.is_dir()
    assert list(target.iterdir()) == []  # the write probe is gone
    assert make_output_dir(str(target)) == target  # an existing folder is fine
    (tmp_path / "f").write_text("x")
    for bad in (tmp_path / "f", tmp_path / "f" / "sub" / "out"):
        with pytest.raises(MmgtError, match=rf"^{bad}: cannot create the folder: {tmp_path / 'f'} is a file$"):
            make_output_dir(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "f"]
