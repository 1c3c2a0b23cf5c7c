"""The web app: :func:`run_job` and the button's callback as plain Python (fast); the page in headless Chromium (slow).

The tiny random-weight model only makes noise, but every file, frame count, audio track and error message is real.
"""

from __future__ import annotations

import math
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import pytest
from PIL import Image

from builders import tiny_stage1, tiny_stage2
from mmgt.app.web import JobOutputs, build_app, gradio_handler, require_gradio, run_job
from mmgt.cli import main
from mmgt.data.synthetic.speech import synthesize_speech
from mmgt.data.synthetic.world import make_identities, reference_image
from mmgt.errors import MediaError, MmgtError
from mmgt.pipelines.mmgt_pipeline import MMGTPipeline
from mmgt.utils.audio_io import save_audio
from mmgt.utils.video_io import probe_video

SECONDS = 1.0
FRAMES = math.ceil(SECONDS * 25)
SIZE = 64
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright's own browser download is not used


@pytest.fixture(scope="module")
def gr():
    """gradio (in the dev install); only the tests of the page and its callback skip without the app extra."""
    pytest.importorskip("gradio", reason="the app extra is not installed: pip install 'mmgt[app]'")
    return require_gradio()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny model folder (2 + 2 sampling steps by default), a synthetic speaker photo, 1 s of speech, a non-image."""
    root = tmp_path_factory.mktemp("web")
    tiny = MMGTPipeline(tiny_stage1(), tiny_stage2(), size=SIZE)
    tiny.stage1.set_sampling(num_inference_steps=2)
    tiny.stage2.set_sampling(num_inference_steps=2)
    model = tiny.save_pretrained(root / "model")
    image = root / "speaker.png"
    Image.fromarray(reference_image(make_identities(1, seed=0)[0], 256)).save(image)  # MediaPipe finds this figure
    clip = synthesize_speech(SECONDS, np.random.default_rng(0))
    audio = save_audio(root / "speech.wav", clip.wave, clip.sample_rate)
    not_image = root / "notes.png"
    not_image.write_text("shopping list, not a picture\n")
    return {"model": model, "image": image, "audio": audio, "not_image": not_image}


@pytest.fixture(scope="module")
def pipe(files) -> MMGTPipeline:
    return MMGTPipeline.from_pretrained(files["model"])


@pytest.fixture(scope="module")
def job_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="module")
def job(pipe, files, job_root) -> JobOutputs:
    return run_job(
        pipe,
        files["image"],
        files["audio"],
        seed=0,
        stage2={"guidance_scale": 3.5},
        max_seconds=60,
        max_image_mb=20,
        output_root=job_root,
        progress=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _job_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


# ---------------------------------------------------------------------------------------------------------------------
# run_job and the callback, without a browser
# ---------------------------------------------------------------------------------------------------------------------
def test_run_job_writes_every_video_into_one_fresh_job_folder(job, job_root):
    assert [p.name for p in job] == ["video.mp4", "preview.mp4", "pose.mp4", "lips.mp4", "face_hands.mp4", "hands.mp4"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in job)
    folder = job.video.parent  # job_root may also hold the callback test's folder (test order is shuffled)
    assert folder in _job_folders(job_root) and all(folder in p.parents for p in job)


def test_video_has_every_frame_and_the_audio(job):
    info = probe_video(job.video)
    assert (info.num_frames, info.width, info.height) == (FRAMES, SIZE, SIZE)
    assert info.has_audio and info.audio_duration_s == pytest.approx(SECONDS, abs=0.04)
    preview = probe_video(job.preview)
    assert (preview.num_frames, preview.width, preview.has_audio) == (FRAMES, 4 * SIZE, True)  # ref|pose|masks|out
    for extra in (job.pose, job.lips, job.face_hands, job.hands):
        assert probe_video(extra).num_frames == FRAMES


def test_callback_returns_paths_in_a_new_folder(gr, pipe, files, job, job_root):
    """What the page calls: raw upload values in ({"path": ...}), one path string per output video out."""
    generate = gradio_handler(pipe, max_seconds=60, max_image_mb=20, output_root=job_root)
    before = _job_folders(job_root)
    paths = generate({"path": str(files["image"])}, {"path": str(files["audio"])}, 2, 3.5, 1)
    assert len(paths) == len(JobOutputs._fields) and all(isinstance(p, str) and Path(p).is_file() for p in paths)
    (new,) = set(_job_folders(job_root)) - set(before)
    assert Path(paths[0]).parent == new and new != Path(job.video).parent
    assert probe_video(paths[0]).num_frames == FRAMES


USER_ERRORS = {
    "not_image": "notes.png: not an image (cannot identify image file)",
    "too_large": "speaker.png: image file is ",
    "too_long": "speech.wav: 1.0 s is longer than the maximum of 0.5 s",
    "no_image": "no photo: upload an image of the person",
    "no_audio": "no speech: upload an audio file or record from the microphone",
}


def _bad_job(files: dict[str, Path], case: str) -> tuple[Path | None, Path | None, dict]:
    """The image, audio and limits of one user error of USER_ERRORS."""
    image = {"not_image": files["not_image"], "no_image": None}.get(case, files["image"])
    audio = None if case == "no_audio" else files["audio"]
    limits = {"max_seconds": 0.5 if case == "too_long" else 60, "max_image_mb": 0.001 if case == "too_large" else 20}
    return image, audio, limits


@pytest.mark.parametrize("case", USER_ERRORS)
def test_user_errors_are_one_line_and_leave_no_job_folder(pipe, files, tmp_path, case):
    image, audio, limits = _bad_job(files, case)
    root = tmp_path / "jobs"
    with pytest.raises(MmgtError) as error:
        run_job(pipe, image, audio, output_root=root, progress=False, **limits)
    message = str(error.value)
    assert message.startswith(USER_ERRORS[case]) and "\n" not in message
    assert str(files["image"].parent) not in message  # uploads are named by file name, not by server path
    assert _job_folders(root) == []


@pytest.mark.parametrize("case", USER_ERRORS)
def test_callback_shows_user_errors_in_the_page(gr, pipe, files, tmp_path, case):
    image, audio, limits = _bad_job(files, case)
    with pytest.raises(MmgtError) as plain:
        run_job(pipe, image, audio, output_root=tmp_path, progress=False, **limits)
    generate = gradio_handler(pipe, output_root=tmp_path, **limits)
    with pytest.raises(gr.Error) as shown:
        generate(*[None if p is None else {"path": str(p)} for p in (image, audio)], 2, 3.5, 0)
    assert shown.value.message == str(plain.value)


def test_too_large_image_names_size_and_limit(pipe, files, tmp_path):
    with pytest.raises(MediaError, match=r"^speaker\.png: image file is 0\.0\d+ MB, over the limit of 0\.001 MB$"):
        run_job(pipe, files["image"], files["audio"], max_image_mb=0.001, output_root=tmp_path)


def test_build_app_has_the_inputs_and_outputs(gr, pipe, tmp_path):
    root = tmp_path / "jobs"
    demo = build_app(pipe, max_seconds=30, output_root=root)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    expected = {
        "mmgt-image",
        "mmgt-audio",
        "mmgt-steps",
        "mmgt-guidance",
        "mmgt-seed",
        "mmgt-generate",
        "mmgt-video",
        "mmgt-preview",
        "mmgt-pose",
        "mmgt-mask-lips",
        "mmgt-mask-face_hands",
        "mmgt-mask-hands",
    }
    assert expected <= ids
    steps = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "mmgt-steps")
    assert steps.value == pipe.stage2.sampling.num_inference_steps == 2  # the model's saved default
    assert demo._queue.default_concurrency_limit == 1  # one job at a time
    (button,) = [fn for fn in demo.fns.values() if fn.name == "generate"]
    assert (button.concurrency_limit, button.preprocess) == (1, False)
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    try:
        assert str(root.resolve()) in demo.allowed_paths  # gradio returns job files to the page from there only
    finally:
        demo.close()


def test_without_gradio_the_app_command_says_how_to_install(monkeypatch, files, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    with pytest.raises(MmgtError, match=r"pip install 'mmgt\[app\]'"):
        require_gradio()
    assert main(["app", "--model", str(files["model"])]) == 1
    assert capsys.readouterr().err == "mmgt: error: the web app needs gradio: pip install 'mmgt[app]'\n"


def test_app_help_names_the_safe_default_host(capsys):
    with pytest.raises(SystemExit):
        main(["app", "--help"])
    out = capsys.readouterr().out
    assert "--share" not in out and "default 127.0.0.1" in out and "0.0.0.0 exposes" in " ".join(out.split())


# ---------------------------------------------------------------------------------------------------------------------
# The page in a browser
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_page_generates_a_video_and_shows_user_errors(gr, pipe, files, tmp_path, monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install 'mmgt[apptest]'")
    if not CHROMIUM.is_file():
        pytest.skip(f"needs Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    # Gradio serves returned files from the working and temporary directories without being told; move the
    # temporary directory away so that the job folders are served only because build_app allows them.
    (tmp_path / "other-tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "other-tmp"))
    demo = build_app(pipe, max_seconds=10, output_root=tmp_path / "jobs")
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            page = browser.new_page()
            page.set_default_timeout(30_000)

            # The happy path: upload, set the steps, generate, fetch the video the page shows.
            page.goto(demo.local_url)
            page.locator("#mmgt-image input[type=file]").set_input_files(files["image"])
            page.locator("#mmgt-audio input[type=file]").set_input_files(files["audio"])
            page.locator("#mmgt-image img").wait_for()  # the upload finished and is shown
            page.locator("#mmgt-audio audio, #mmgt-audio .waveform-container").first.wait_for(state="attached")
            steps = page.locator("#mmgt-steps input[type=number]")
            steps.fill("2")
            steps.press("Enter")
            page.locator("#mmgt-generate").click()
            video, toast = page.locator("#mmgt-video video"), page.get_by_test_id("toast-body")
            failed = page.locator("#mmgt-video [data-testid=status-tracker] .error")  # any exception, shown or not
            video.or_(failed).first.wait_for(state="attached", timeout=180_000)
            assert not failed.count(), f"the job failed: {toast.all_inner_texts() or 'no message shown'}"
            src = video.get_attribute("src")
            assert src
            response = page.request.get(urljoin(demo.local_url, src))
            assert response.ok
            body = response.body()
            assert body[4:8] == b"ftyp"  # an mp4
            downloaded = tmp_path / "downloaded.mp4"
            downloaded.write_bytes(body)
            info = probe_video(downloaded)
            assert (info.num_frames, info.has_audio) == (FRAMES, True)

            # A file that is not an image: the one-line message appears in the page, nothing is generated.
            page.goto(demo.local_url)
            shutil.copy(files["not_image"], tmp_path / "notes.png")
            page.locator("#mmgt-image input[type=file]").set_input_files(tmp_path / "notes.png")
            page.locator("#mmgt-audio input[type=file]").set_input_files(files["audio"])
            page.locator("#mmgt-audio audio, #mmgt-audio .waveform-container").first.wait_for(state="attached")
            page.locator("#mmgt-generate").click()
            toast.first.wait_for()
            assert "notes.png: not an image (cannot identify image file)" in toast.first.inner_text()
            assert len(list((tmp_path / "jobs").iterdir())) == 1  # the failed job left no folder
            browser.close()
    finally:
        demo.close()
