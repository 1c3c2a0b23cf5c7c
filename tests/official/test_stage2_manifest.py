"""The committed stage-2 manifest is what the release's code builds (opt-in; MMGT_WRITE_MANIFEST=1 rewrites it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import mmgt.weights as weights_package

from .stage2_release import manifest_text, requires_release

pytestmark = [pytest.mark.official, requires_release]
MANIFEST = Path(weights_package.__file__).parent / "released_manifest" / "stage2.json"


def test_committed_manifest_is_what_the_release_builds():
    text = manifest_text()
    if os.environ.get("MMGT_WRITE_MANIFEST") == "1":
        MANIFEST.write_text(text)
    assert json.loads(MANIFEST.read_text()) == json.loads(text)
    full = json.loads(text)["shapes"]["released"]
    assert len(full) == 2232 and "audioproj.proj1.weight" in full  # 2.30 G values, the ~9.2 GB fp32 file
