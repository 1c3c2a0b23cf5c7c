"""`mmgt data preprocess|check` and `mmgt synth` on bad input: exactly one `mmgt: error:` line, a non-zero exit code,
and nothing written (issue 18). Every case runs through `mmgt.cli.main` in-process, so a traceback fails the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmgt.cli import main
from mmgt.utils.video_writer import save_video


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """videos/ with one short video, empty/ with a text file only, a regular file, a synthetic and a foreign folder."""
    save_video(tmp_path / "videos" / "talk.mp4", np.full((5, 32, 32, 3), 90, np.uint8), fps=25)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no videos here\n")
    (tmp_path / "a_file").write_text("not a folder\n")
    synth = tmp_path / "synth"
    synth.mkdir()
    (synth / "manifest.jsonl").write_text("")
    (synth / "synth_config.json").write_text(json.dumps({"seed": 0}) + "\n")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "me.png").write_bytes(b"\x89PNG")
    return tmp_path


def _tree(root: Path) -> dict[str, bytes | None]:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


PREPROCESS = ["data", "preprocess", "{videos}", "-o", "{out}", "--no-progress"]
SYNTH = ["synth", "--clips", "2", "--seconds", "0.4", "--size", "32", "--identities", "1", "--quiet", "--out", "{out}"]

CASES = {
    # mmgt data preprocess
    "preprocess: missing input folder": (PREPROCESS, {"videos": "nope"}, "nope: videos folder not found"),
    "preprocess: input is a file": (PREPROCESS, {"videos": "a_file"}, "a_file: not a folder"),
    "preprocess: no videos": (PREPROCESS, {"videos": "empty"}, "empty: no videos in this folder or below"),
    "preprocess: out under a file": (PREPROCESS, {"out": "a_file/data"}, "a_file is a file"),
    "preprocess: out is a file": (PREPROCESS, {"out": "a_file"}, "a_file is a file"),
    "preprocess: out holds a synthetic dataset": (
        PREPROCESS,
        {"out": "synth"},
        "synth: folder holds a dataset not made by `mmgt data preprocess`",
    ),
    "preprocess: out holds other files": (PREPROCESS, {"out": "photos"}, "photos: folder holds other files"),
    "preprocess: odd --size": ([*PREPROCESS, "--size", "33"], {}, "size must be an even number of pixels >= 32"),
    "preprocess: tiny --size": ([*PREPROCESS, "--size", "16"], {}, "size must be an even number of pixels >= 32"),
    "preprocess: --workers 0": ([*PREPROCESS, "--workers", "0"], {}, "workers must be >= 1, got 0"),
    "preprocess: --shard 2/2": ([*PREPROCESS, "--shard", "2/2"], {}, "with 0 <= i < n, got (2, 2)"),
    "preprocess: --shard 1/0": ([*PREPROCESS, "--shard", "1/0"], {}, "shard must be (i, n)"),
    "preprocess: --split-ratios": ([*PREPROCESS, "--split-ratios", "0.5,0.5,0.5"], {}, "split_ratios must be 3"),
    "preprocess: --crop-left 2": ([*PREPROCESS, "--crop-left", "2"], {}, "crop_left must be a fraction"),
    "preprocess: --min-seconds -1": ([*PREPROCESS, "--min-seconds", "-1"], {}, "min_seconds must be >= 0"),
    # mmgt data check
    "check: missing folder": (["data", "check", "{root}/nope"], {}, "nope/manifest.jsonl: dataset manifest not found"),
    "check: folder without a manifest": (["data", "check", "{root}/empty"], {}, "empty/manifest.jsonl: dataset"),
    "check: a file": (["data", "check", "{root}/a_file"], {}, "a_file/manifest.jsonl: dataset manifest not found"),
    # mmgt synth
    "synth: out under a file": (SYNTH, {"out": "a_file/data"}, "a_file is a file"),
    "synth: out holds another synthetic dataset": (SYNTH, {"out": "synth"}, "synth: folder holds another synthetic"),
    "synth: out holds other files": (SYNTH, {"out": "photos"}, "photos: folder holds other files"),
    "synth: --size 8": ([*SYNTH, "--size", "8"], {}, "size must be in [16, 2048] pixels, got 8"),
    "synth: --clips 0": ([*SYNTH, "--clips", "0"], {}, "need clips >= 1"),
    "synth: --seconds 0": ([*SYNTH, "--seconds", "0"], {}, "seconds > 0"),
    "synth: --workers 0": ([*SYNTH, "--workers", "0"], {}, "workers >= 1"),
    "synth: --identities 0": ([*SYNTH, "--identities", "0"], {}, "identities must be >= 1, got 0"),
    "synth: --tts 2": ([*SYNTH, "--tts", "2"], {}, "0 <= tts_fraction <= 1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_error_line_and_writes_nothing(workdir: Path, capsys, case: str) -> None:
    template, paths, message = CASES[case]
    values = {"videos": "videos", "out": "out", **paths}
    values = {k: str(workdir / v) for k, v in values.items()} | {"root": str(workdir)}
    before = _tree(workdir)

    code = main([arg.format(**values) for arg in template])

    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("mmgt: error: "), err
    assert message in err[0]
    assert _tree(workdir) == before  # no output folder, no temp file, nothing changed


def test_bad_manifest_lines_give_one_error_line(tmp_path: Path, capsys) -> None:
    """`mmgt data check` on manifests with a non-object line, a wrongly typed field, or bytes that are not UTF-8."""
    good = {
        "id": "c0",
        "split": "train",
        "speaker": "s",
        "fps": 25,
        "num_frames": 10,
        "duration_s": 0.4,
        "width": 32,
        "height": 32,
        "sample_rate": 16000,
        "video": "clips/c0.mp4",
        "audio": "clips/c0.wav",
        "keypoints": "clips/c0.npz",
    }
    manifests = {
        "list": (b"[1, 2]\n", "manifest.jsonl:1: bad clip record (not a JSON object)"),
        "type": (json.dumps({**good, "num_frames": "ten"}).encode() + b"\n", "num_frames must be int, got str 'ten'"),
        "binary": (b"\xff\xfe\x00garbage\n", "manifest.jsonl: not a UTF-8 text file"),
    }
    for name, (content, message) in manifests.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.jsonl").write_bytes(content)
        assert main(["data", "check", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mmgt: error: ") and message in err[0], (name, err)


def test_synth_reruns_into_its_own_folder(tmp_path: Path, capsys) -> None:
    """The same arguments into the same folder regenerate it (identical files); it is not "another dataset"."""
    argv = [arg.format(out=tmp_path / "out") for arg in SYNTH]
    assert main(argv) == 0
    first = _tree(tmp_path)
    assert main(argv) == 0
    assert _tree(tmp_path).keys() == first.keys()
    assert json.loads((tmp_path / "out" / "synth_config.json").read_text())["clips"] == 2
    assert capsys.readouterr().err == ""
