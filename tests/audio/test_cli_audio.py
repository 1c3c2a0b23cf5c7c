"""`mmgt audio features`: writes an .npz with features, fps, num_frames and spec_json; errors are one line."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from mmgt.cli import audio as audio_cli
from mmgt.errors import MediaError, MmgtError, ModelFolderError
from mmgt.utils.audio_io import load_audio, save_audio

SR = 16000


def main(argv: list[str]) -> int:
    """Parse with only the `audio` group registered (independent of the other command modules) and run."""
    parser = argparse.ArgumentParser(prog="mmgt")
    audio_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def _wav(tmp_path, duration: float = 1.03):
    t = np.arange(int(duration * SR)) / SR
    return save_audio(tmp_path / "talk.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)


def test_stage1_fallback_windowed(tmp_path, capsys):
    wav = _wav(tmp_path)
    out = tmp_path / "out" / "feats.npz"
    assert main(["audio", "features", str(wav), "-o", str(out), "--windowed"]) == 0
    assert "(26, 116)" in capsys.readouterr().out
    with np.load(out) as data:
        assert set(data.files) == {"features", "fps", "num_frames", "spec_json"}
        assert data["features"].shape == (26, 116) and int(data["fps"]) == 25 and int(data["num_frames"]) == 26
        spec = json.loads(str(data["spec_json"]))
    assert spec["stage"] == 1 and spec["window_frames"] == 80 and spec["speech"]["type"] == "mel"
    assert [p.name for p in out.parent.iterdir()] == ["feats.npz"]  # no temporary file left behind


def test_stage2_with_encoder_matches_the_library(tmp_path, tiny_wav2vec2):
    from mmgt.audio import SpeechEncoder, stage2_audio_features

    wav = _wav(tmp_path)
    out = tmp_path / "feats2.npz"
    assert main(["audio", "features", str(wav), "-o", str(out), "--stage", "2", "--encoder", str(tiny_wav2vec2)]) == 0
    encoder = SpeechEncoder.from_pretrained(tiny_wav2vec2, layers="all", interpolate="before_transformer")
    expected = stage2_audio_features(load_audio(wav), SR, encoder)
    with np.load(out) as data:
        np.testing.assert_allclose(data["features"], expected, rtol=0, atol=1e-6)
        assert json.loads(str(data["spec_json"]))["num_layers"] == 3


def test_bad_input_raises_one_line_mmgt_errors(tmp_path):
    wav = _wav(tmp_path, 0.2)
    out = tmp_path / "x.npz"
    with pytest.raises(MmgtError, match="--stage 2 needs --encoder"):
        main(["audio", "features", str(wav), "-o", str(out), "--stage", "2"])
    with pytest.raises(MmgtError, match="--windowed applies to --stage 1 only"):
        main(["audio", "features", str(wav), "-o", str(out), "--stage", "2", "--encoder", str(tmp_path), "--windowed"])
    missing = tmp_path / "wavlm"
    with pytest.raises(ModelFolderError, match=f"folder {missing}: does not exist"):
        main(["audio", "features", str(wav), "-o", str(out), "--encoder", str(missing)])
    with pytest.raises(MediaError, match="nope.wav: file not found"):
        main(["audio", "features", str(tmp_path / "nope.wav"), "-o", str(out)])
    assert not out.exists()


def test_every_command_and_option_has_help():
    parser = argparse.ArgumentParser(prog="mmgt")
    subparsers = parser.add_subparsers()
    audio_cli.register(subparsers)
    group = subparsers.choices["audio"]
    commands = next(a for a in group._actions if isinstance(a, argparse._SubParsersAction))
    assert [c.dest for c in commands._choices_actions] == ["features"] and commands._choices_actions[0].help
    helps = {a.dest: a.help for a in commands.choices["features"]._actions if a.dest != "help"}
    assert set(helps) == {"audio", "output", "encoder", "stage", "windowed", "device"}
    assert all(helps.values()), helps
