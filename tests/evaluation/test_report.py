"""The report folder: metrics.json + report.md + plots, written together or not at all."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmgt.errors import MmgtError
from mmgt.evaluation import report as rp
from mmgt.evaluation.report import Metric, Report, check_output_dir, write_report


def _report() -> Report:
    report = Report("video", "test report", {"real": "r", "generated": "g"}, ["a", "b"], ["generated"])
    report.add(Metric("fid", "Inception", {"generated": 12.5}, reference=3.25, reference_note="halves"))
    report.add(
        Metric(
            "lip_sync",
            "keypoints",
            {"generated": float("nan")},
            per_clip={"generated": {"a": 0.5, "b": float("nan")}},
            reference_per_clip={"a": 0.9, "b": 0.8},
            reference=0.85,
        )
    )
    report.skip("LPIPS", {"needs": "alexnet-owt-7be5be79.pth", "what": "AlexNet", "how": "pass --lpips-alexnet"})
    report.curves["a"] = {"mouth": np.sin(np.arange(50) / 3), "audio envelope": np.cos(np.arange(50) / 3)}
    report.curve_scores["a"] = 0.5
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    report.contact_sheet = {"rows": [("a\nreal", frames), ("a\ngenerated", frames + 100)]}
    return report


def test_writes_json_markdown_and_plots(tmp_path):
    out = tmp_path / "report"
    write_report(_report(), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "contact_sheet.png",
        "distributions.png",
        "metrics.json",
        "mouth.png",
        "report.md",
    ]
    data = json.loads((out / "metrics.json").read_text())
    assert data["format"] == "mmgt-eval-report" and data["clips"] == ["a", "b"]
    assert data["metrics"]["fid"]["label"] == "FID" and data["metrics"]["fid"]["direction"] == "lower"
    assert data["metrics"]["lip_sync"]["values"]["generated"] is None  # NaN -> null, valid JSON
    assert data["skipped"][0]["needs"] == "alexnet-owt-7be5be79.pth"
    md = (out / "report.md").read_text()
    assert "| FID | ↓ | 12.5 | 3.25 | Inception |" in md
    assert "| lip sync (r) | ↑ | – | 0.85 | keypoints |" in md
    assert "**LPIPS**: needs `alexnet-owt-7be5be79.pth`" in md and "![mouth](mouth.png)" in md


def test_replaces_an_earlier_report_but_never_a_foreign_folder(tmp_path):
    out = tmp_path / "report"
    write_report(_report(), out, plots=False)
    (out / "stale.txt").write_text("from the earlier run")
    write_report(_report(), out, plots=False)
    assert not (out / "stale.txt").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(MmgtError, match="not empty and holds no earlier mmgt report"):
        check_output_dir(foreign)
    (tmp_path / "file").write_text("x")
    with pytest.raises(MmgtError, match="is a file"):
        check_output_dir(tmp_path / "file")


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def broken(report, path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(rp, "_plot_mouth", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(_report(), tmp_path / "report")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its hidden temporary sibling


def test_unknown_metric_keys_are_refused():
    with pytest.raises(MmgtError, match="unknown metric key 'fvd2'"):
        Metric("fvd2", "x", {})
