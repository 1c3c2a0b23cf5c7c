"""The Gradio web app behind ``mmgt app``: a photo and speech in (uploaded or recorded), the talking video out.

The page shows the generated video, the side-by-side preview (reference | pose | masks | output) and, folded away,
the stage-1 pose video and the three motion-mask videos. The model is loaded once by the caller and shared by all
jobs; the queue runs one job at a time (a CPU machine has no room for two). Each job writes into a fresh folder of its
own under ``output_root``, so jobs never overwrite each other's files.

:func:`run_job` is the whole job as plain Python (it raises :class:`~mmgt.errors.MmgtError`); :func:`build_app` only
wraps it in a page and turns those errors into ``gradio.Error`` messages shown in the browser. Gradio is imported
inside functions, so this module imports without the ``app`` extra installed.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mmgt.app.generate import generate_files, load_inputs
from mmgt.constants import MOTION_MASKS
from mmgt.errors import MediaError, MmgtError
from mmgt.pipelines.mmgt_pipeline import MMGTPipeline

if TYPE_CHECKING:
    import gradio

INSTALL_HINT = "the web app needs gradio: pip install 'mmgt[app]'"


class JobOutputs(NamedTuple):
    """The files of one finished job (a tuple, in the order of the page's output components)."""

    video: Path  # the generated mp4 with the audio
    preview: Path  # reference | pose | masks | output, with the audio
    pose: Path  # the stage-1 poses drawn as a video, with the audio
    lips: Path
    face_hands: Path
    hands: Path


def require_gradio():
    """The ``gradio`` module, or a one-line MmgtError saying how to install it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local tool: no usage reports unless asked for
    try:
        import gradio
    except ImportError as e:
        raise MmgtError(INSTALL_HINT) from e
    return gradio


def run_job(
    pipe: MMGTPipeline,
    image_path: str | os.PathLike | None,
    audio_path: str | os.PathLike | None,
    *,
    seed: int = 0,
    stage1: dict | None = None,
    stage2: dict | None = None,
    max_seconds: float = 60,
    max_image_mb: float = 20,
    output_root: str | os.PathLike,
    progress: bool = True,
) -> JobOutputs:
    """One web job: check the inputs, generate into a new folder under ``output_root``, return the videos.

    Args:
        pipe: the loaded pipeline (shared by all jobs).
        image_path: the uploaded photo of the person.
        audio_path: the uploaded or recorded speech.
        seed: random seed of both stages.
        stage1, stage2: sampling overrides per stage (see :meth:`MMGTPipeline.__call__`; None: the model's).
        max_seconds: refuse longer audio.
        max_image_mb: refuse larger image files (megabytes, 10^6 bytes).
        output_root: each job gets a fresh folder here (``<time>-<random>/``).
        progress: tqdm progress bars per stage (the page follows them).

    Returns:
        :class:`JobOutputs`.

    Raises:
        MmgtError: one line for the page, naming uploads by their file name only; the job folder is removed.
    """
    if not image_path:
        raise MediaError("no photo: upload an image of the person")
    if not audio_path:
        raise MediaError("no speech: upload an audio file or record from the microphone")
    size_mb = os.path.getsize(image_path) / 1e6 if os.path.isfile(image_path) else 0.0  # missing: the loader says
    if size_mb > max_image_mb:
        raise MediaError(
            f"{Path(image_path).name}: image file is {size_mb:.3g} MB, over the limit of {max_image_mb:g} MB"
        )
    root = Path(output_root)
    root.mkdir(parents=True, exist_ok=True)
    job = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))
    try:
        result = generate_files(
            pipe,
            load_inputs(image_path, audio_path),
            job / "video.mp4",
            preview=job / "preview.mp4",
            intermediates=job / "intermediates",
            seed=int(seed),
            stage1=stage1,
            stage2=stage2,
            max_seconds=max_seconds,
            progress=progress,
        )
    except MmgtError as e:
        shutil.rmtree(job, ignore_errors=True)
        raise type(e)(_short_names(str(e), image_path, audio_path)) from e
    except BaseException:
        shutil.rmtree(job, ignore_errors=True)
        raise
    extra = {p.relative_to(job / "intermediates").as_posix(): p for p in result.intermediates}
    masks = [extra[f"masks/{name}.mp4"] for name in MOTION_MASKS]
    return JobOutputs(result.output, result.preview, extra["pose.mp4"], *masks)


def _short_names(message: str, *paths: str | os.PathLike) -> str:
    """``message`` with the server-side paths of uploads replaced by their file names."""
    for path in paths:
        message = message.replace(str(path), Path(path).name)
    return message


def _upload_path(value: Any) -> str | None:
    """The server-side path of an upload, from the raw (not preprocessed) value of a file component."""
    if value is None:
        return None
    return value["path"] if isinstance(value, dict) else str(value)


def gradio_handler(pipe: MMGTPipeline, *, max_seconds: float, max_image_mb: float, output_root: str | os.PathLike):
    """The Generate button's callback: :func:`run_job` on the uploads' raw values, MmgtError -> ``gradio.Error``.

    The button is wired with ``preprocess=False``: gradio hands over the uploads untouched (``{"path": ...}``, after
    checking they are its own uploads), so mmgt's loaders read them (RGBA onto white, EXIF, any audio format) and
    give the one-line errors, instead of gradio's image decoding failing first with a generic message.
    """
    gr = require_gradio()

    def generate(image, audio, steps, guidance, seed, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        progress(0, desc="Reading the inputs")
        try:
            outputs = run_job(
                pipe,
                _upload_path(image),
                _upload_path(audio),
                seed=int(seed or 0),
                stage2={"num_inference_steps": int(steps), "guidance_scale": float(guidance)},
                max_seconds=max_seconds,
                max_image_mb=max_image_mb,
                output_root=output_root,
            )
        except MmgtError as e:
            raise gr.Error(str(e)) from e
        return [str(p) for p in outputs]

    return generate


def build_app(
    pipe: MMGTPipeline,
    *,
    max_seconds: float = 60,
    max_image_mb: float = 20,
    output_root: str | os.PathLike | None = None,
) -> gradio.Blocks:
    """The page: inputs and settings on the left, the videos on the right; queued, one job at a time.

    Args:
        pipe: the loaded pipeline; the settings' defaults are the model's (``pipe.stage2.sampling``).
        max_seconds: longest accepted audio.
        max_image_mb: largest accepted image file.
        output_root: where the job folders go (default: a new temporary folder).

    Returns:
        the ``gradio.Blocks`` app; start it with ``.launch(server_name=..., server_port=...)``.

    Raises:
        MmgtError: gradio is not installed.
    """
    gr = require_gradio()
    root = Path(output_root) if output_root is not None else Path(tempfile.mkdtemp(prefix="mmgt-app-"))
    root.mkdir(parents=True, exist_ok=True)
    gr.set_static_paths([root])  # serve the job files from where they are, without copies in gradio's cache
    sampling = pipe.stage2.sampling
    generate = gradio_handler(pipe, max_seconds=max_seconds, max_image_mb=max_image_mb, output_root=root)

    with gr.Blocks(title="MMGT: speech + photo -> talking video") as demo:
        gr.Markdown(
            "# MMGT: a talking, gesturing video from speech and one photo\n"
            f"Upload a photo of a person (upper body visible, up to {max_image_mb:g} MB) and speech (up to "
            f"{max_seconds:g} s), or record it, then press **Generate**."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="Photo of the person", type="filepath", elem_id="mmgt-image")
                audio = gr.Audio(
                    label="Speech", sources=["upload", "microphone"], type="filepath", elem_id="mmgt-audio"
                )
                steps = gr.Slider(
                    1,
                    100,
                    value=sampling.num_inference_steps,
                    step=1,
                    label="Denoising steps (stage 2)",
                    info="fewer is faster, more is cleaner",
                    elem_id="mmgt-steps",
                )
                guidance = gr.Slider(
                    1.0,
                    10.0,
                    value=sampling.guidance_scale,
                    step=0.1,
                    label="Guidance scale (stage 2)",
                    elem_id="mmgt-guidance",
                )
                seed = gr.Number(value=0, precision=0, label="Seed", elem_id="mmgt-seed")
                button = gr.Button("Generate", variant="primary", elem_id="mmgt-generate")
            with gr.Column():
                video = gr.Video(label="Generated video", interactive=False, elem_id="mmgt-video")
                preview = gr.Video(
                    label="Preview: reference | pose | masks | output", interactive=False, elem_id="mmgt-preview"
                )
                with gr.Accordion("Pose and motion masks", open=False):
                    with gr.Tabs():
                        with gr.Tab("Pose"):
                            pose = gr.Video(label="Pose (stage 1)", interactive=False, elem_id="mmgt-pose")
                        masks = []
                        for name in MOTION_MASKS:
                            with gr.Tab(f"Mask: {name.replace('_', ' + ')}"):
                                masks.append(
                                    gr.Video(label=f"{name} mask", interactive=False, elem_id=f"mmgt-mask-{name}")
                                )
        button.click(
            generate,
            inputs=[image, audio, steps, guidance, seed],
            outputs=[video, preview, pose, *masks],
            preprocess=False,
            concurrency_limit=1,
            concurrency_id="mmgt-generate",
        )
    _serve_from(demo, root)
    return demo.queue(default_concurrency_limit=1)


def _serve_from(demo: gradio.Blocks, folder: Path) -> None:
    """Make ``demo.launch()`` add ``folder`` to its ``allowed_paths``.

    Gradio returns files to the page only from its allowed paths, the working directory and the temporary directory,
    and it takes the allowed paths from ``launch()``; without this an ``output_root`` elsewhere fails every job at the
    last step.
    """
    launch = demo.launch

    @functools.wraps(launch)
    def launch_serving_outputs(*args, allowed_paths: list[str] | None = None, **kwargs):
        if allowed_paths is None:  # what gradio would use: GRADIO_ALLOWED_PATHS, comma-separated
            allowed_paths = [p.strip() for p in os.environ.get("GRADIO_ALLOWED_PATHS", "").split(",") if p.strip()]
        return launch(*args, allowed_paths=[*allowed_paths, str(folder.resolve())], **kwargs)

    demo.launch = launch_serving_outputs
