"""`mmgt weights check` on tiny fake folders: a base-weights folder (the sd15 layout with tiny configs) and a trained
model folder written by MMGTPipeline.save_pretrained. Everything is built from config; nothing is downloaded."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from builders import TINY_SPEECH
from mmgt.cli import build_parser, main
from mmgt.weights import BASE_LAYOUT, MODEL_PARTS, base_folders, check_base_folder, check_folder, folder_kind

ROOT = Path(__file__).parents[1]


def _save_base(root: Path, controlnet: bool = False) -> Path:
    """The base-weights layout with the `tiny` preset's shapes (wav2vec2: 4 layers x 32, what `tiny` reads)."""
    from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        Wav2Vec2Config,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
    )

    from mmgt.models.stage2_presets import PRESETS

    torch.manual_seed(0)
    tiny = PRESETS["tiny"]
    UNet2DConditionModel(**tiny["unet"]).save_pretrained(root / "unet")
    AutoencoderKL(**tiny["vae"]).save_pretrained(root / "vae")
    CLIPVisionModelWithProjection(CLIPVisionConfig(**tiny["image_encoder"])).save_pretrained(root / "image_encoder")
    MotionAdapter(**tiny["motion_adapter"]).save_pretrained(root / "motion_adapter")
    Wav2Vec2Model(Wav2Vec2Config(num_hidden_layers=4, **TINY_SPEECH)).save_pretrained(root / "wav2vec2")
    wavlm = WavLMConfig(num_hidden_layers=2, num_buckets=16, max_bucket_distance=32, **TINY_SPEECH)
    WavLMModel(wavlm).save_pretrained(root / "wavlm")
    if controlnet:
        unet = {k: v for k, v in tiny["unet"].items() if k not in ("sample_size", "out_channels", "up_block_types")}
        ControlNetModel(**unet, conditioning_embedding_out_channels=(8, 16, 16, 32)).save_pretrained(
            root / "controlnet_openpose"
        )
    return root


@pytest.fixture(scope="module")
def base_template(tmp_path_factory) -> Path:
    return _save_base(tmp_path_factory.mktemp("base") / "sd15", controlnet=True)


@pytest.fixture
def base(base_template, tmp_path) -> Path:
    """A fresh copy without the optional ControlNet, safe to damage."""
    return Path(shutil.copytree(base_template, tmp_path / "sd15", ignore=shutil.ignore_patterns("controlnet_*")))


def _check(capsys, folder: Path, *extra: str) -> tuple[int, list[str]]:
    code = main(["weights", "check", str(folder), "--preset", "tiny", *extra])
    return code, capsys.readouterr().out.splitlines()


def _row(lines: list[str], part: str) -> str:
    return next(line for line in lines if line.split()[0] == part)


# ---------------------------------------------------------------------------------------------------------------------
# Base-weights folder
# ---------------------------------------------------------------------------------------------------------------------
def test_complete_base_folder_is_ok(base, capsys):
    code, lines = _check(capsys, base)
    print("\n".join(lines))
    assert code == 0
    assert lines[0] == f"{base}: base-weights folder"
    for part in BASE_LAYOUT[:-1]:
        assert _row(lines, part.name).split()[1] == "ok", _row(lines, part.name)
    assert _row(lines, "controlnet_openpose").split()[1:3] == ["missing", "(optional)"]
    assert "lllyasviel/control_v11p_sd15_openpose" in _row(lines, "controlnet_openpose")
    assert lines[-1] == "all 6 required parts ok (optional, not present: controlnet_openpose)"


def test_optional_controlnet_is_checked_when_present(base_template, capsys):
    code, lines = _check(capsys, base_template)
    assert code == 0 and _row(lines, "controlnet_openpose").split()[1] == "ok"
    assert lines[-1] == "all 6 required parts ok"


def test_missing_parts_are_named(base, capsys):
    shutil.rmtree(base / "vae")
    shutil.rmtree(base / "wavlm")
    code, lines = _check(capsys, base)
    print("\n".join(lines))
    assert code == 1
    assert _row(lines, "vae").split()[1] == "missing" and "stabilityai/sd-vae-ft-mse" in _row(lines, "vae")
    assert lines[-1] == "2 of 7 parts missing: vae, wavlm"


def test_mismatched_cross_attention_dim_names_both_numbers(base, capsys):
    config = base / "unet" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "cross_attention_dim": 48}))
    code, lines = _check(capsys, base)
    assert code == 1
    # The preset (tiny: 64) decides which side is wrong: the UNet, not the image encoder.
    assert _row(lines, "unet").split()[1] == "mismatched"
    assert "cross_attention_dim 48 does not match image_encoder projection_dim 64" in _row(lines, "unet")
    assert _row(lines, "image_encoder").split()[1] == "ok"
    assert lines[-1] == "1 of 7 parts mismatched: unet"


def test_motion_adapter_and_vae_must_fit_the_unet(base):
    for part, key, value in (("motion_adapter", "block_out_channels", [32, 64, 128]), ("vae", "latent_channels", 8)):
        config = base / part / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), key: value}))
    status = {p.name: p for p in check_base_folder(base, preset="tiny")}
    assert status["motion_adapter"].status == "mismatched" and "[32, 64, 64]" in status["motion_adapter"].detail
    assert status["vae"].detail == "latent_channels 8 does not match unet in_channels 4"
    assert status["unet"].status == "ok"


def test_config_without_weights_or_with_damaged_weights_is_incomplete(base, capsys):
    (base / "motion_adapter" / "diffusion_pytorch_model.safetensors").unlink()
    weights = base / "wav2vec2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # an interrupted download
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 167335342\n"
    (base / "vae" / "diffusion_pytorch_model.safetensors").write_text(pointer)  # a clone without Git LFS
    code, lines = _check(capsys, base)
    assert code == 1
    assert _row(lines, "motion_adapter").split()[1] == "incomplete"
    assert "no weights: expected diffusion_pytorch_model.safetensors" in _row(lines, "motion_adapter")
    assert "model.safetensors is truncated or damaged" in _row(lines, "wav2vec2")
    assert "a Git LFS pointer" in _row(lines, "vae")
    assert lines[-1] == "3 of 7 parts incomplete: vae, motion_adapter, wav2vec2"


def test_a_part_one_level_too_deep_gets_a_hint(base):
    shutil.move(base / "vae", base / "vae_tmp")
    (base / "vae").mkdir()
    shutil.move(base / "vae_tmp", base / "vae" / "vae")  # `--include "vae/*" --local-dir sd15/vae`
    vae = check_base_folder(base, preset="tiny")[1]
    assert vae.status == "incomplete" and "one level down" in vae.detail


def test_the_sd15_preset_wants_wav2vec2_base_sized_features(base):
    status = {p.name: p for p in check_base_folder(base)}  # default preset sd15; the shapes agree among themselves
    assert [p.name for p in status.values() if p.status != "ok" and p.required] == ["wav2vec2"]
    assert status["wav2vec2"].detail == "gives 4 layers x 32 per frame, the sd15 recipe reads 12 x 768"


def test_json_report_parses(base, capsys):
    shutil.rmtree(base / "unet")
    code, lines = _check(capsys, base, "--json")
    report = json.loads("\n".join(lines))
    assert code == 1 and report["kind"] == "base" and report["ok"] is False
    assert report["summary"] == "1 of 7 parts missing: unet"
    unet = report["parts"][0]
    assert (unet["name"], unet["status"], unet["source"]) == ("unet", "missing", BASE_LAYOUT[0].repository)


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["weights", "check", str(tmp_path / "nowhere")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"mmgt: error: weights folder {tmp_path / 'nowhere'} not found\n"


def test_base_folders_feed_load_sd15_components(base_template):
    from mmgt.models.stage2_presets import load_sd15_components

    folders = base_folders(base_template)
    assert folders == {p.loader_key: str(base_template / p.name) for p in BASE_LAYOUT if p.loader_key}
    parts = load_sd15_components(folders, new_modules_preset="tiny")
    assert parts["unet"].config.cross_attention_dim == 64
    assert parts["pose_guider"].config.block_out_channels == (8, 16, 16, 32)  # initialised from the ControlNet


def test_base_folders_leaves_out_an_absent_controlnet(base):
    assert sorted(base_folders(base)) == ["image_encoder", "motion_adapter", "unet", "vae"]


# ---------------------------------------------------------------------------------------------------------------------
# Trained model folder
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_template(base_template, tmp_path_factory) -> Path:
    """Stage 1 on log-mel features, stage 2 on the base folder's tiny wav2vec2 (so encoders/stage2 is required)."""
    from mmgt.audio.encoders import SpeechEncoder
    from mmgt.audio.features import feature_spec
    from mmgt.diffusion.stage1 import make_stage1_scheduler
    from mmgt.diffusion.stage2 import make_stage2_scheduler
    from mmgt.models.audio_projection import AudioProjection
    from mmgt.models.denoising_unet import build_denoising_unet
    from mmgt.models.gesture_denoiser import GestureDenoiser
    from mmgt.models.stage2_presets import build_components, preset
    from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
    from mmgt.pipelines.mmgt_pipeline import MMGTPipeline
    from mmgt.pipelines.pose_to_video import PoseToVideoPipeline

    torch.manual_seed(0)
    spec1 = feature_spec(None, stage=1)
    stage1 = AudioToPosePipeline(
        GestureDenoiser.from_preset("tiny", audio_dim=spec1["dim"]), make_stage1_scheduler(), spec1
    )
    encoder = SpeechEncoder.from_pretrained(base_template / "wav2vec2", layers="all", interpolate="before_transformer")
    spec2 = feature_spec(encoder, stage=2)
    c = build_components("tiny")
    projection = AudioProjection(
        **{**preset("tiny")["audio_projection"], "num_layers": spec2["num_layers"], "input_dim": spec2["dim"]}
    )
    stage2 = PoseToVideoPipeline(
        c["vae"],
        c["image_encoder"],
        c["reference_unet"],
        build_denoising_unet(c["unet"], c["motion_adapter"]),
        c["pose_guider"],
        projection,
        c["audio_adapter"],
        make_stage2_scheduler(),
        audio_features=spec2,
    )
    stage2.set_audio_encoder(encoder)
    return MMGTPipeline(stage1, stage2, size=64).save_pretrained(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture
def model(model_template, tmp_path) -> Path:
    return Path(shutil.copytree(model_template, tmp_path / "model"))


def test_complete_model_folder_is_ok(model, capsys):
    assert folder_kind(model) == "model"
    code, lines = _check(capsys, model)
    print("\n".join(lines))
    assert code == 0 and lines[0] == f"{model}: trained MMGT model folder"
    assert [line.split()[0] for line in lines[2:-1]] == list(MODEL_PARTS)
    assert _row(lines, "encoders/stage1").split()[1:3] == ["missing", "(optional)"]  # stage 1 reads log-mel
    assert _row(lines, "encoders/stage2").split()[1] == "ok"
    assert lines[-1] == "all 4 required parts ok (optional, not present: encoders/stage1)"


def test_model_folder_without_its_speech_encoder_fails(model, capsys):
    shutil.rmtree(model / "encoders" / "stage2")
    code, lines = _check(capsys, model)
    assert code == 1 and _row(lines, "encoders/stage2").split()[1] == "missing"
    assert lines[-1] == "1 of 5 parts missing: encoders/stage2"


def test_model_folder_audio_projection_must_fit_the_recipe(model):
    config = model / "stage2" / "audio_projection" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "num_layers": 3}))
    stage2 = check_folder(model)[2]
    assert stage2.status == "mismatched"
    assert (
        stage2.detail
        == "audio_projection num_layers x input_dim 3 x 32 does not match audio_features num_layers x dim 4 x 32"
    )


def test_model_folder_component_without_weights_is_incomplete(model):
    (model / "stage1" / "denoiser" / "diffusion_pytorch_model.safetensors").unlink()
    stage1 = check_folder(model)[1]
    assert stage1.status == "incomplete" and stage1.detail.startswith("denoiser/: no weights")


def test_model_parts_name_the_pipeline_config():
    from mmgt.pipelines.model_folder import CONFIG_NAME

    assert MODEL_PARTS[0] == CONFIG_NAME


# ---------------------------------------------------------------------------------------------------------------------
# Docs and configs
# ---------------------------------------------------------------------------------------------------------------------
def _doc_commands(path: Path) -> list[list[str]]:
    """`mmgt ...` lines of the shell blocks (continuation lines joined)."""
    found, in_shell = [], False
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        if line.startswith("```"):
            in_shell = line.strip() in ("```bash", "```sh", "```console")
        elif in_shell and line.strip().startswith("mmgt "):
            found.append(shlex.split(line.split("#")[0])[1:])
    return found


def test_docs_name_every_part_and_their_commands_parse():
    doc = ROOT / "docs" / "weights.md"
    text = doc.read_text()
    for part in BASE_LAYOUT:
        assert f"{part.name}/" in text and part.repository in text
    commands = _doc_commands(doc)
    assert len(commands) >= 3
    for argv in commands:
        assert hasattr(build_parser().parse_args(argv), "func"), argv


@pytest.mark.parametrize("step", ["image", "video"])
def test_sd15_configs_read_the_base_folder(step):
    from mmgt.config import Stage2Train, load_config

    cfg = load_config(Stage2Train, ROOT / "configs" / "stage2" / f"sd15_{step}.yaml")
    assert (cfg.step, cfg.preset, cfg.name) == (step, "sd15", f"sd15_{step}")
    if step == "image":
        expected = {p.loader_key: f"weights/sd15/{p.name}" for p in BASE_LAYOUT if p.loader_key}
        assert vars(cfg.folders) == expected
        no_controlnet = load_config(
            Stage2Train, ROOT / "configs" / "stage2" / "sd15_image.yaml", ["folders.controlnet=null"]
        )
        assert no_controlnet.folders.controlnet is None
    else:
        assert cfg.data.encoder == "weights/sd15/wav2vec2" and cfg.motion_adapter == "weights/sd15/motion_adapter"
        assert cfg.init_from == "runs/stage2/sd15_image/final"


# ---------------------------------------------------------------------------------------------------------------------
# `mmgt weights convert-released`: the manifest of the release's layout, filled with random tensors (T1)
# ---------------------------------------------------------------------------------------------------------------------
MANIFEST = json.loads((ROOT / "src" / "mmgt" / "weights" / "released_manifest" / "stage2.json").read_text())
STAGE2_FILE = MANIFEST["checkpoint"]
STAGE1_FILE = "stage_1/audio2pose_best_model.pt"  # mmgt.weights.released_stage1.STAGE1_CHECKPOINT
# The release's SMGA at test sizes (8 layers, as released: the same key set as the manifest; 8 heads of width 4); its
# condition is the base folder's tiny WavLM (32) + the 35 librosa features.
STAGE1_TINY = dict(hidden_dim=32, num_layers=8, ff_dim=48, audio_dim=35 + TINY_SPEECH["hidden_size"])


def _release_state(size: str, seed: int = 0, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The release's stage-2 state dict at a preset's sizes: random values, the sinusoids where it stores them."""
    from diffusers.models.embeddings import SinusoidalPositionalEmbedding

    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in MANIFEST["shapes"][size].items():
        if key.endswith("pos_encoder.pe"):  # (1, max_len, C): what the release computes at construction
            state[key] = SinusoidalPositionalEmbedding(shape[2], shape[1]).pe  # real even on "meta": it is compared
        elif device == "meta":
            state[key] = torch.empty(shape, device="meta")
        else:
            state[key] = torch.randn(shape, generator=g)
    return state


def _stage1_release(tiny: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """The release's stage-1 ``ema_state_dict``: the full-size manifest or the same layout at STAGE1_TINY sizes."""
    from builders import random_stage1_release
    from mmgt.weights.released_stage1 import ReleaseSizes, load_manifest, release_layout

    return random_stage1_release(release_layout(ReleaseSizes(**STAGE1_TINY)) if tiny else load_manifest(), seed)


def _save_stage1(path: Path, state: dict[str, torch.Tensor]) -> None:
    """The release's stage-1 file: EMA and training weights (here the same), no optimizer state."""
    torch.save({"ema_state_dict": state, "model_state_dict": state, "epoch": 7}, path)


@pytest.fixture(scope="module")
def release_template(tmp_path_factory) -> Path:
    """A release folder at test sizes: net-32500.pth (released_tiny) with `module.` prefixes, the stage-1 file."""
    root = tmp_path_factory.mktemp("release") / "MMGT_pretrained"
    (root / "stage_2" / "process_2").mkdir(parents=True)
    state = {f"module.{k}": v for k, v in _release_state("released_tiny").items()}
    torch.save(state, root / STAGE2_FILE)
    (root / "stage_1").mkdir()
    _save_stage1(root / STAGE1_FILE, _stage1_release())
    return root


@pytest.fixture
def release(release_template, tmp_path) -> Path:
    return Path(shutil.copytree(release_template, tmp_path / "release"))


def _convert(release: Path, base: Path, out: Path, *extra: str) -> int:
    return main(["weights", "convert-released", str(release), "--base", str(base), "-o", str(out), *extra])


@pytest.fixture(scope="module")
def converted(release_template, base_template, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "mmgt_released"
    start = time.perf_counter()
    assert _convert(release_template, base_template, out, "--preset", "released_tiny", "--size", "64") == 0
    print(f"convert-released (both stages, test sizes): {time.perf_counter() - start:.1f} s")
    return out


def test_converted_release_is_a_model_folder_with_the_released_settings(converted, capsys):
    code, lines = _check(capsys, converted)
    assert code == 0 and lines[-1] == "all 5 required parts ok", "\n".join(lines)
    stage2 = json.loads((converted / "stage2" / "model_index.json").read_text())
    assert stage2["motion_norm"] == "per_frame" and stage2["uncond_reference"] == "skip"
    assert stage2["mask_variant"] == "official_audio2vid"  # spec §4.4: the release's demo, global branch 1 + V^l
    assert (stage2["num_inference_steps"], stage2["guidance_scale"], stage2["branch_weights"]) == (30, 3.5, [1, 1, 2])
    scheduler = json.loads((converted / "stage2" / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["beta_schedule"], scheduler["prediction_type"]) == ("linear", "v_prediction")
    assert scheduler["rescale_betas_zero_snr"] and scheduler["timestep_spacing"] == "trailing"
    adapter = json.loads((converted / "stage2" / "audio_adapter" / "config.json").read_text())
    assert adapter["position"] == "transformer_output" and adapter["inner_channels"] == [32, 32]
    stage1 = json.loads((converted / "stage1" / "model_index.json").read_text())
    assert (stage1["target_offset"], stage1["normalize_scores"]) == (0, True)
    assert json.loads((converted / "mmgt.json").read_text())["config"]["size"] == 64


def test_converted_weights_are_the_release_tensors_by_rule(converted, release_template):
    from safetensors.torch import load_file

    source = {k.removeprefix("module."): v for k, v in torch.load(release_template / STAGE2_FILE).items()}

    def saved(component: str) -> dict[str, torch.Tensor]:
        return load_file(converted / "stage2" / component / "diffusion_pytorch_model.safetensors")

    adapter, guider, unet, projection = (
        saved(c) for c in ("audio_adapter", "pose_guider", "unet", "audio_projection")
    )
    audio = "denoising_unet.down_blocks.1.audio_modules.0."  # the width-changing module: 64 -> 32 -> 64
    assert torch.equal(adapter["layers.1.proj_in.weight"], source[audio + "proj_in.weight"][:, :, 0, 0])
    assert adapter["layers.1.proj_in.weight"].shape == (32, 64)  # 1x1 conv (C_a, C, 1, 1) -> linear (C_a, C)
    zero_conv = source[audio + "transformer_blocks.0.zero_conv_lip.weight"]
    assert torch.equal(adapter["layers.1.branches.lips.adapter.weight"], zero_conv.flatten(1))
    assert torch.equal(
        adapter["layers.1.branches.lips.adapter.bias"], source[audio + "transformer_blocks.0.zero_conv_lip.bias"]
    )
    assert torch.equal(
        adapter["layers.0.branches.face_hands.attn.to_k.weight"],
        source["denoising_unet.down_blocks.0.audio_modules.0.transformer_blocks.0.attn2_1.to_k.weight"],
    )
    # Pose guider: the release's flat list [conv, strided conv, conv, ...] -> named pairs.
    assert torch.equal(guider["blocks.1.down.weight"], source["pose_guider.blocks.3.weight"])
    assert torch.equal(guider["blocks.2.conv.bias"], source["pose_guider.blocks.4.bias"])
    # Motion modules: AnimateDiff names -> diffusers names.
    mm = "denoising_unet.up_blocks.1.motion_modules.1.temporal_transformer.transformer_blocks.0."
    ours = "up_blocks.1.motion_modules.1.transformer_blocks.0."
    assert torch.equal(unet[ours + "attn2.to_v.weight"], source[mm + "attention_blocks.1.to_v.weight"])
    assert torch.equal(unet[ours + "norm3.bias"], source[mm + "ff_norm.bias"])
    assert torch.equal(projection["mlp.4.weight"], source["audioproj.proj3.weight"])


def test_stage1_manifest_filled_converts_and_loads_strictly_with_the_released_settings(converted, release_template):
    """T1, stage 1: the release's SMGA layout (the manifest's keys at test sizes), converted by convert-released."""
    from safetensors.torch import load_file

    from mmgt.models.gesture_denoiser import PRESETS
    from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
    from mmgt.weights.released_stage1 import load_manifest

    source = torch.load(release_template / STAGE1_FILE)["ema_state_dict"]
    assert source.keys() == load_manifest().keys()  # the tiny release has exactly the released keys
    pipe = AudioToPosePipeline.from_pretrained(converted / "stage1")  # from_pretrained loads strictly
    denoiser = pipe.denoiser
    assert {k: denoiser.config[k] for k in PRESETS["released"]} == {
        **PRESETS["released"],
        "hidden_dim": 32,
        "ff_dim": 48,
    }
    assert (denoiser.config.audio_dim, denoiser.config.num_heads) == (67, 8)
    spec = pipe.config.audio_features
    assert (spec["dim"], spec["window_frames"], spec["librosa"]["start_tempo"]) == (67, 80, "reload")
    sampling = (pipe.config.num_inference_steps, pipe.config.guidance_scale, pipe.config.eta)
    assert sampling == (50, 2.0, 1.0)  # the release's ddim_sample
    saved = load_file(converted / "stage1" / "denoiser" / "diffusion_pytorch_model.safetensors")
    assert len(saved) == len(denoiser.state_dict())
    fused = source["seqTransDecoder.stack.7.face_self_attn.in_proj_weight"]  # q, k, v stacked
    for i, name in enumerate(("to_q", "to_k", "to_v")):
        assert torch.equal(saved[f"layers.7.face_block.self_attn.{name}.weight"], fused[32 * i : 32 * (i + 1)])
    speech, librosa = source["cond_projection.weight"].split([32, 35], dim=1)  # release [WavLM ; librosa]
    assert torch.equal(saved["audio_proj.weight"], torch.cat([librosa, speech], dim=1))  # mmgt [librosa ; WavLM]
    assert torch.equal(saved["face_encoder.weight"], source["input_projection.weight"])
    assert not any("self_attn.in_proj" in k or "norm_face_3" in k or "freqs" in k for k in saved)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "audio2pose_best_model.pt: cannot be read, truncated or not a PyTorch checkpoint"),
        ("no ema", "audio2pose_best_model.pt: no 'ema_state_dict' in the checkpoint"),
        (
            "unknown key",
            "released stage-1 weights: 1 unknown key(s), the first 'seqTransDecoder.stack.2.extra.bias'",
        ),
        ("wrong shape", "released stage-1 weights: final_layer.bias has shape (7,), expected (402,)"),
        ("missing key", "1 documented key(s) missing, the first 'seqTransDecoder.stack.3.norm_body_3.weight'"),
        ("wrong frequencies", "seqTransDecoder.stack.0.rotary.freqs differs from the recomputed rotary frequencies"),
    ],
)
def test_a_damaged_stage1_file_is_one_line_and_writes_nothing(release, base_template, tmp_path, capsys, how, message):
    path = release / STAGE1_FILE
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        state = torch.load(path)["ema_state_dict"]
        if how == "no ema":
            torch.save({"model_state_dict": state}, path)
        else:
            if how == "unknown key":
                state["seqTransDecoder.stack.2.extra.bias"] = torch.zeros(48)
            elif how == "wrong shape":
                state["final_layer.bias"] = torch.zeros(7)
            elif how == "missing key":
                del state["seqTransDecoder.stack.3.norm_body_3.weight"]
            elif how == "wrong frequencies":
                state["seqTransDecoder.stack.0.rotary.freqs"] = state["seqTransDecoder.stack.0.rotary.freqs"] * 1.01
            _save_stage1(path, state)
    capsys.readouterr()
    out = tmp_path / "out" / "model"
    assert _convert(release, base_template, out, "--stage1-only") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mmgt: error: ") and message in err, err
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_a_speech_encoder_of_another_width_is_refused(release, base, tmp_path, capsys):
    from transformers import WavLMConfig, WavLMModel

    shutil.rmtree(base / "wavlm")
    small = {**TINY_SPEECH, "hidden_size": 16}
    WavLMModel(WavLMConfig(num_hidden_layers=1, num_buckets=16, max_bucket_distance=32, **small)).save_pretrained(
        base / "wavlm"
    )
    assert _convert(release, base, tmp_path / "model", "--stage1-only") == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "gives 51 audio features per frame with the librosa ones, the released SMGA takes 67 (it needs WavLM-Large)"
    ), err
    assert not (tmp_path / "model").exists()


def test_converted_release_loads_as_mmgt_generate_does_and_renders(converted):
    from mmgt.constants import NUM_KEYPOINTS
    from mmgt.contracts import PoseSequence
    from mmgt.models.denoising_unet import motion_norm
    from mmgt.pipelines.mmgt_pipeline import MMGTPipeline
    from mmgt.utils.audio_io import Audio

    pipe = MMGTPipeline.from_pretrained(converted)
    assert pipe.stage2.audio_encoder is not None and pipe.stage1.audio_encoder is not None
    assert pipe.stage2.config.motion_norm == "per_frame" and motion_norm(pipe.stage2.unet) == "per_frame"
    rng = np.random.default_rng(0)
    kp = (rng.uniform(16, 48, (1, NUM_KEYPOINTS, 2)) + np.arange(3)[:, None, None]).astype(np.float32)
    poses = PoseSequence(kp, np.ones((3, NUM_KEYPOINTS), np.float32), 64, 64)
    wave = Audio((0.1 * rng.standard_normal(3 * 640)).astype(np.float32), 16000)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    frames = pipe.stage2(image, poses, wave, num_inference_steps=2, progress=False).frames
    assert frames.shape == (3, 64, 64, 3) and frames.std() > 1.0


def test_the_full_size_manifest_converts_onto_the_released_components():
    """Every key and shape of the real checkpoint (on the meta device: no memory), strictly loadable."""
    from mmgt.weights.released_stage2 import build_skeleton, convert_stage2

    skeleton = build_skeleton("released")
    states, _, dropped = convert_stage2(_release_state("released", device="meta"), "released", skeleton)
    for name, module in skeleton.items():
        module.load_state_dict(states[name], strict=True, assign=True)
    assert skeleton["audio_adapter"].config.inner_channels == [320, 320, 320, 640, 640, 1280]
    assert round(sum(p.numel() for p in skeleton["audio_adapter"].parameters()) / 1e6, 1) == 92.0
    assert dropped[0].startswith("denoising_unet.*.pos_encoder.pe (42 buffers)")  # 2 per motion module, 21 modules
    assert len(dropped) == 2 and dropped[1].startswith("reference_unet.conv_norm_out/conv_out: not in the release")


def test_the_documented_conversion_commands_run(release, base_template, tmp_path, capsys):
    """docs/weights.md's convert-released and check lines on the tiny release (paths swapped for the fixtures')."""
    swap = {
        "weights/MMGT_pretrained": str(release),
        "weights/sd15": str(base_template),
        "models/mmgt-released": str(tmp_path / "mmgt-released"),
    }
    documented = [argv for argv in _doc_commands(ROOT / "docs" / "weights.md") if "models/mmgt-released" in argv]
    assert [argv[:2] for argv in documented] == [
        ["weights", "convert-released"],
        ["weights", "check"],
        ["generate", "--model"],
    ]
    convert, check = ([swap.get(a, a) for a in argv] for argv in documented[:2])
    assert main([*convert, "--preset", "released_tiny", "--size", "64"]) == 0
    assert main(check) == 0, capsys.readouterr().out


class _NotAStateDict:
    """Pickled as a Python object: torch.load(weights_only=True) refuses it."""


def _damage(release: Path, how: str) -> None:
    path = release / STAGE2_FILE
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return
    if how == "python object":
        torch.save({"net": _NotAStateDict()}, path)
        return
    if how == "not a dict":
        torch.save([torch.zeros(1)], path)
        return
    state = torch.load(path)
    if how == "unknown key":
        state["module.denoising_unet.down_blocks.0.audio_modules.0.extra.weight"] = torch.zeros(1)
    elif how == "wrong shape":
        state["module.audioproj.proj1.weight"] = torch.zeros(3, 3)
    elif how == "missing key":
        del state["module.audioproj.norm.weight"]
    elif how == "wrong encoding":
        key = next(k for k in state if k.endswith("pos_encoder.pe"))
        state[key] = state[key] + 0.01  # ten times what fp16 storage could explain
    torch.save(state, path)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "net-32500.pth: cannot be read, truncated or not a PyTorch checkpoint"),
        ("python object", "net-32500.pth: holds Python objects, not only tensors"),
        ("not a dict", "net-32500.pth: not a plain state dict (key -> tensor); got list"),
        ("unknown key", "1 unknown key (denoising_unet.down_blocks.0.audio_modules.0.extra.weight)"),
        (
            "wrong shape",
            "layout: 1 wrong shape (audioproj.proj1.weight (3, 3) (mmgt audio_projection.mlp.0.weight (64, 640)))",
        ),
        ("missing key", "1 missing key (audio_projection.norm.weight)"),
        ("wrong encoding", "1 wrong value (denoising_unet.down_blocks.0.motion_modules.0.temporal_transformer"),
    ],
)
def test_a_damaged_release_is_one_line_and_writes_nothing(release, base_template, tmp_path, capsys, how, message):
    _damage(release, how)
    capsys.readouterr()
    out = tmp_path / "out" / "model"
    assert _convert(release, base_template, out, "--stage2-only", "--preset", "released_tiny") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mmgt: error: ") and message in err, err
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))  # no temp folder left


def test_each_stage_alone_is_its_pipeline_folder(release, base_template, tmp_path, capsys):
    for flag, cls in (("--stage1-only", "AudioToPosePipeline"), ("--stage2-only", "PoseToVideoPipeline")):
        out = tmp_path / flag
        assert _convert(release, base_template, out, flag, "--preset", "released_tiny") == 0
        assert json.loads((out / "model_index.json").read_text())["_class_name"] == cls
        assert not (out / "mmgt.json").exists()
    assert "stage1 pipeline folder written" in capsys.readouterr().out
    (release / STAGE1_FILE).unlink()  # stage 2 alone does not need the stage-1 file ...
    assert _convert(release, base_template, tmp_path / "again", "--stage2-only", "--preset", "released_tiny") == 0
    assert _convert(release, base_template, tmp_path / "both", "--preset", "released_tiny") == 1  # ... both do
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"release file {STAGE1_FILE} missing") and not (tmp_path / "both").exists()


def test_existing_output_and_missing_base_parts_are_refused(release, base, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert _convert(release, base, tmp_path / "taken", "--stage2-only", "--preset", "released_tiny") == 1
    assert "taken: already exists" in capsys.readouterr().err
    shutil.rmtree(base / "wav2vec2")
    shutil.rmtree(base / "vae")
    assert _convert(release, base, tmp_path / "new", "--stage2-only", "--preset", "released_tiny") == 1
    assert capsys.readouterr().err.strip().endswith("base part vae/ missing; base part wav2vec2/ missing")


def test_stage1_entry_and_state_dict_checks(tmp_path):
    from mmgt.errors import ModelFolderError
    from mmgt.weights.released import read_checkpoint

    torch.save({"model_state_dict": {"a": torch.zeros(1)}}, tmp_path / "s1.pt")
    with pytest.raises(
        ModelFolderError, match=r"no 'ema_state_dict' in the checkpoint \(found \['model_state_dict'\]\)"
    ):
        read_checkpoint(tmp_path / "s1.pt", "ema_state_dict")
    torch.save({"module.a": torch.ones(2), "b": torch.zeros(1)}, tmp_path / "s2.pt")
    assert set(read_checkpoint(tmp_path / "s2.pt")) == {"a", "b"}
    torch.save({"module.a": torch.ones(2), "a": torch.zeros(1)}, tmp_path / "s3.pt")
    with pytest.raises(ModelFolderError, match="keys repeat once their 'module.' prefix is removed"):
        read_checkpoint(tmp_path / "s3.pt")


# The conversion runs in a child process so that its peak memory can be measured.
_CONVERT_CHILD = """
import resource, sys
from mmgt.cli import main
code = main(["weights", "convert-released", {release!r}, "--base", {base!r}, "-o", {out!r}, *{extra!r}])
print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""

_RELEASE_CHILD = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_weights import _release_state, _save_stage1, _stage1_release
torch.save(_release_state("released", seed=0), {stage2!r})
_save_stage1({stage1!r}, _stage1_release(tiny=False))  # the full-size manifest
"""


def _full_size_base(root: Path) -> Path:
    """The base parts the conversion reads, at their real sizes (random weights): VAE, CLIP-L, wav2vec2, WavLM."""
    from diffusers import AutoencoderKL
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        Wav2Vec2Config,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
    )

    from mmgt.models.stage2_presets import PRESETS

    torch.manual_seed(0)
    released = PRESETS["released"]
    AutoencoderKL(**released["vae"]).save_pretrained(root / "vae")
    CLIPVisionModelWithProjection(CLIPVisionConfig(**released["image_encoder"])).save_pretrained(
        root / "image_encoder"
    )
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(root / "wav2vec2")  # the defaults are wav2vec2-base's sizes
    large = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    WavLMModel(WavLMConfig(**large, feat_extract_norm="layer", do_stable_layer_norm=True)).save_pretrained(
        root / "wavlm"
    )
    return root


@pytest.mark.slow
def test_full_size_release_converts_checks_and_runs_one_step(tmp_path, capsys, record_property):
    from mmgt.audio.encoders import SpeechEncoder
    from mmgt.constants import NUM_KEYPOINTS
    from mmgt.contracts import PoseSequence
    from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
    from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
    from mmgt.utils.audio_io import Audio

    release, base, out = tmp_path / "release", tmp_path / "base", tmp_path / "model"
    (release / "stage_2" / "process_2").mkdir(parents=True)
    (release / "stage_1").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    child = _RELEASE_CHILD.format(
        tests=str(ROOT / "tests"), stage2=str(release / STAGE2_FILE), stage1=str(release / STAGE1_FILE)
    )
    subprocess.run([sys.executable, "-c", child], check=True, env=env)  # its 9 GB of random tensors die with it
    _full_size_base(base)
    size_gib = (release / STAGE2_FILE).stat().st_size / 2**30

    def convert(folder: Path, *extra: str) -> tuple[float, float]:
        """(seconds, the converting process's own peak RSS in GiB)."""
        start = time.perf_counter()
        script = _CONVERT_CHILD.format(release=str(release), base=str(base), out=str(folder), extra=list(extra))
        done = subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True, text=True)
        return time.perf_counter() - start, int(done.stdout.split("PEAK_RSS_KIB")[-1]) / 2**20  # KiB -> GiB

    seconds, peak = convert(tmp_path / "stage1_only", "--stage1-only")
    print(f"full-size stage-1 conversion (--stage1-only): {seconds:.1f} s, peak RSS {peak:.2f} GiB")
    record_property("convert_stage1_s", round(seconds, 1))
    record_property("convert_stage1_peak_rss_gib", round(peak, 2))
    elapsed, peak = convert(out)
    print(f"full-size conversion of a {size_gib:.1f} GiB net-32500.pth: {elapsed:.0f} s, peak RSS {peak:.1f} GiB")
    record_property("convert_s", round(elapsed))
    record_property("convert_peak_rss_gib", round(peak, 1))
    assert main(["weights", "check", str(out)]) == 0, capsys.readouterr().out
    (release / STAGE2_FILE).unlink()  # the disk it took

    stage1 = AudioToPosePipeline.from_pretrained(out / "stage1")
    assert stage1.denoiser.config.rotary == "token" and stage1.denoiser.config.audio_dim == 1059
    stage1.set_audio_encoder(SpeechEncoder.for_stage(out / "encoders" / "stage1", 1))
    rng = np.random.default_rng(0)
    kp = rng.uniform(64, 192, (1, NUM_KEYPOINTS, 2)).astype(np.float32)
    reference = PoseSequence(kp, np.ones((1, NUM_KEYPOINTS), np.float32), 256, 256)
    start = time.perf_counter()
    poses = stage1(
        Audio((0.1 * rng.standard_normal(16000)).astype(np.float32), 16000), reference, num_inference_steps=1
    )
    print(f"stage 1, one denoising step (CFG) of a 1-s window: {time.perf_counter() - start:.1f} s")
    record_property("stage1_one_step_s", round(time.perf_counter() - start, 1))
    assert poses.poses.num_frames == 25 and np.isfinite(poses.poses.keypoints).all()

    pipe = PoseToVideoPipeline.from_pretrained(out / "stage2")
    pipe.set_audio_encoder(SpeechEncoder.for_stage(out / "encoders" / "stage2", 2))
    rng = np.random.default_rng(0)
    kp = (rng.uniform(64, 192, (1, NUM_KEYPOINTS, 2)) + np.arange(2)[:, None, None]).astype(np.float32)
    poses = PoseSequence(kp, np.ones((2, NUM_KEYPOINTS), np.float32), 256, 256)
    wave = Audio((0.1 * rng.standard_normal(2 * 640)).astype(np.float32), 16000)
    start = time.perf_counter()
    frames = pipe(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), poses, wave, num_inference_steps=1).frames
    print(f"one denoising step, 2 frames at 256x256: {time.perf_counter() - start:.1f} s")
    record_property("one_step_s", round(time.perf_counter() - start, 1))
    assert frames.shape == (2, 256, 256, 3)
