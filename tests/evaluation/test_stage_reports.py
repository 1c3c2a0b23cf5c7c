"""``mmgt eval stage1/stage2 --report``: the stage harnesses write the same report folder as ``mmgt eval video``."""

from __future__ import annotations

import json

from builders import tiny_stage1, tiny_stage2
from mmgt.cli import main
from mmgt.evaluation.report import write_report
from mmgt.training.validate_stage2 import evaluate_stage2, stage2_report


def test_eval_stage1_report_has_conditions_as_columns_and_the_ground_truth_ceiling(synth_dataset, tmp_path):
    folder = tmp_path / "model"
    tiny_stage1(window=16).save_pretrained(folder)
    out, legacy = tmp_path / "report", tmp_path / "m.json"
    argv = ["eval", "stage1", "--model", str(folder), "--data", str(synth_dataset), "--steps", "2"]
    argv += ["--conditions", "model", "still_reference", "-o", str(legacy), "--report", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["kind"] == "stage1" and data["conditions"] == ["model", "still_reference"]
    assert set(data["metrics"]) == {"lip_sync", "beat_align", "kp_l2", "pck"}
    lip = data["metrics"]["lip_sync"]
    assert lip["values"]["still_reference"] == 0.0 and lip["reference"] > 0.8  # still mouth vs the true poses
    assert lip["values"]["model"] == json.loads(legacy.read_text())["results"]["model"]["lip_sync"]  # one code path
    assert "| lip sync (r) | ↑ |" in (out / "report.md").read_text()


def test_stage2_report_keeps_the_real_frames_mouth_r_as_reference(synth_dataset, tmp_path):
    result = evaluate_stage2(tiny_stage2(), synth_dataset, "test", num_frames=12, size=64, num_inference_steps=1)
    report = stage2_report(result, {"model": "tiny", "data": str(synth_dataset)})
    assert report.conditions == ["audio", "no_audio"]
    by_key = {m.key: m for m in report.metrics}
    assert set(by_key) == {"psnr", "ssim", "colour_error", "identity_ok", "mouth_r", "hand_psnr"}
    assert by_key["mouth_r"].reference == result["mean"]["ground_truth"]["mouth_r"] > 0.5
    assert by_key["psnr"].values["audio"] == result["mean"]["audio"]["psnr"] and by_key["psnr"].reference is None
    write_report(report, tmp_path / "report")
    assert "| mouth-region r | ↑ |" in (tmp_path / "report" / "report.md").read_text()
