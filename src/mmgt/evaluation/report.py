"""The evaluation report: ``metrics.json`` (every number with its implementation, weights and protocol) and
``report.md`` with PNG plots, written together or not at all.

``mmgt eval video``, ``mmgt eval stage1`` and ``mmgt eval stage2`` all build a :class:`Report` and call
:func:`write_report`, so their outputs read the same way. A report holds:

* conditions (``generated`` for a video set; ``model``, ``still_reference``, ... for the stage harnesses), one column
  each, and a reference column: the real set scored the same way (its "self-reference") where that is defined;
* one :class:`Metric` per number: label, direction, implementation, weight-file records, per-clip values;
* ``skipped``: metrics that did not run and the file each needs;
* facts about the input (clips, frame counts, resolution, fps) and the time each stage took.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mmgt import __version__
from mmgt.constants import FPS
from mmgt.errors import MmgtError
from mmgt.utils.files import atomic_folder

FORMAT = "mmgt-eval-report"
FORMAT_VERSION = 1
REPORT_FILES = ("metrics.json", "report.md")
ARROWS = {"lower": "↓", "higher": "↑"}

# One table label and one direction ("lower" / "higher" is better) per metric key, for every harness that reports it.
METRICS: dict[str, tuple[str, str]] = {
    "fid": ("FID", "lower"),
    "fvd": ("FVD (TF-Hub I3D)", "lower"),
    "fvd_styleganv": ("FVD (StyleGAN-V I3D)", "lower"),
    "psnr": ("PSNR (dB)", "higher"),
    "ssim": ("SSIM", "higher"),
    "lpips": ("LPIPS", "lower"),
    "sync_c": ("Sync-C (LSE-C)", "higher"),
    "sync_d": ("Sync-D (LSE-D)", "lower"),
    "hkc": ("HKC", "higher"),
    "hkv": ("HKV", "higher"),
    "lip_sync": ("lip sync (r)", "higher"),
    "beat_align": ("BAS", "higher"),
    "diversity": ("diversity (L1Div)", "higher"),
    "fgd": ("FGD", "lower"),
    "kp_l2": ("keypoint L2 (px)", "lower"),
    "pck": ("PCK@0.1", "higher"),
    "mouth_r": ("mouth-region r", "higher"),
    "colour_error": ("clothing colour error", "lower"),
    "hand_psnr": ("hand-region PSNR (dB)", "higher"),
    "identity_ok": ("identity kept", "higher"),
}

# How each metric is computed, as results state it; {placeholders} name the detector or window of a run.
IMPLEMENTATION = {
    "fid": "TF-FID InceptionV3 pool3 (2048-d) of frames resized to 299 (bilinear) and scaled (x - 128) / 128",
    "fvd": "I3D Kinetics-400 logits (400-d) of 16-frame clips; frames resized to 224 (TF1 bilinear), scaled to "
    "[-1, 1]: the original FVD",
    "fvd_styleganv": "StyleGAN-V's I3D TorchScript (400-d) of 16-frame clips; frames in [0, 255] at their own size "
    "(rescale=True, resize=True)",
    "psnr": "per frame against the real frame (uint8 range), mean over frames, then clips",
    "ssim": "per frame against the real frame: Gaussian 11x11 window, sigma 1.5, mean over RGB, frames, clips",
    "lpips": "LPIPS v0.1 with the AlexNet trunk, per frame against the real frame at the video's size; mean over "
    "frames, then clips",
    "sync": "Wav2Lip's LSE: SyncNet v2, offsets ±15 frames, MFCCs of the 16 kHz speech; face crops by {faces}; "
    "mean over clips",
    "hkc": "mean confidence of the 42 hand points ({detector})",
    "hkv": "temporal variance of hand positions in (fraction of frame)^2, mean over hand points ({detector})",
    "lip_sync": "Pearson r of inner-lip opening and the audio RMS envelope, best lag within ±2 frames ({detector})",
    "beat_align": "beat alignment: audio onsets vs joint-speed minima, sigma 3 frames, mean over onsets ({detector})",
    "diversity": "L1Div: mean per-keypoint L1 distance to the mean pose, px ({detector})",
    "kp_l2": "mean keypoint distance to the ground truth over the points visible in it, px",
    "pck": "share of ground-truth-visible points within 0.1 x the upper-body box size",
    "colour_error": "RGB distance of the output's median shirt colour (below the shoulders) to the reference's",
    "identity_ok": "share of clips whose output shirt colour is nearest to their own reference's",
    "hand_psnr": "PSNR against the real frames over the pixels of the hand keypoint boxes (grown by 25 % each side), "
    "pooled over the clip's frames, mean over clips",
    "mouth_r": "Pearson r of mouth-region pixel change (window fixed to the head) and the audio RMS envelope, best "
    "lag within ±2 frames",
    "fgd": "Fréchet distance of pose-autoencoder latents of {window}-frame windows, stride 16 ({detector})",
}


@dataclass
class Metric:
    """One reported number per condition.

    Attributes:
        key: a key of :data:`METRICS` (which gives the label and the direction), e.g. ``"fid"``.
        implementation: how it was computed, in words (network, preprocessing, definition).
        values: condition -> value (NaN when it could not be computed for that condition).
        reference: the real set's self-reference (e.g. real vs an independent real half), None if undefined.
        reference_note: what the reference is.
        per_clip: condition -> clip -> value, for per-clip metrics.
        reference_per_clip: clip -> value of the real clips.
        weights: :func:`mmgt.evaluation.weight_files.verify` records of the files used.
        details: protocol facts (sample counts, window, stride, ...).
    """

    key: str
    implementation: str
    values: dict[str, float]
    reference: float | None = None
    reference_note: str | None = None
    per_clip: dict[str, dict[str, float]] | None = None
    reference_per_clip: dict[str, float] | None = None
    weights: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.key not in METRICS:
            raise MmgtError(f"unknown metric key {self.key!r}; add it to mmgt.evaluation.report.METRICS")

    @property
    def label(self) -> str:
        return METRICS[self.key][0]

    @property
    def direction(self) -> str:
        return METRICS[self.key][1]

    def to_json(self) -> dict:
        return {"label": self.label, "direction": self.direction, **_jsonable(asdict(self))}


@dataclass
class Report:
    """Everything ``metrics.json`` and ``report.md`` say (see the module docstring)."""

    kind: str
    title: str
    inputs: dict
    clips: list[str]
    conditions: list[str]
    metrics: list[Metric] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    video: dict | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Plot data, kept out of metrics.json: clip -> series name -> (F,) values; an (H, W, 3) uint8 image.
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    curve_scores: dict[str, float] = field(default_factory=dict, repr=False)
    contact_sheet: dict | None = field(default=None, repr=False)

    def add(self, metric: Metric) -> Metric:
        self.metrics.append(metric)
        return metric

    def skip(self, label: str, reason: dict) -> None:
        """List ``label`` as not computed, with ``reason`` (e.g. :func:`weight_files.missing`)."""
        self.skipped.append({"metric": label, **reason})

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "title": self.title,
            "mmgt_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "inputs": self.inputs,
            "clips": self.clips,
            "conditions": self.conditions,
            "video": self.video,
            "metrics": {m.key: m.to_json() for m in self.metrics},
            "skipped": self.skipped,
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
            "notes": self.notes,
        }


def _jsonable(value):
    """NaN and inf become None (JSON has neither); numpy scalars become floats."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def fmt(value: float | None) -> str:
    """Four significant digits; a dash for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}"


def nanmean(values) -> float:
    """Mean of the finite values; NaN when there are none (no warning)."""
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")


# ---------------------------------------------------------------------------------------------------------------------
# report.md and its plots
# ---------------------------------------------------------------------------------------------------------------------
def markdown(report: Report, plots: dict[str, str]) -> str:
    """The report as Markdown; ``plots`` maps plot kind to its file name next to report.md."""
    cols = list(report.conditions)
    has_reference = any(m.reference is not None for m in report.metrics)
    lines = [f"# {report.title}", ""]
    for key, value in report.inputs.items():
        if value is not None:
            lines.append(f"- {key}: `{value}`")
    if report.video:
        v = report.video
        size = f"{v['width']}x{v['height']} px, {v['fps']:g} fps"
        lines.append(f"- {len(report.clips)} clips, {v['total_frames']} frames, {size}")
    else:
        lines.append(f"- {len(report.clips)} clips")
    lines += ["", "## Metrics", ""]
    header = ["metric", "", *cols] + (["real (self-reference)"] if has_reference else []) + ["implementation"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in report.metrics:
        row = [m.label, ARROWS.get(m.direction, ""), *(fmt(m.values.get(c)) for c in cols)]
        if has_reference:
            row.append(fmt(m.reference))
        row.append(m.implementation)
        lines.append("| " + " | ".join(row) + " |")
    notes = [f"- **{m.label}** reference: {m.reference_note}" for m in report.metrics if m.reference_note]
    if notes:
        lines += ["", *notes]
    if report.skipped:
        lines += ["", "## Skipped (weights not available)", ""]
        for s in report.skipped:
            lines.append(f"- **{s['metric']}**: needs `{s['needs']}` ({s['what']}); {s['how']}")
    if report.notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in report.notes)]
    captions = {
        "distributions": "Per-clip values (dots: clips; bar: mean).",
        "mouth": "Mouth opening vs the audio envelope: the clips with the best and the worst lip sync.",
        "contact_sheet": "Contact sheet: real (upper row) and generated (lower row) frames of each clip.",
    }
    for kind, name in plots.items():
        lines += ["", f"![{kind}]({name})", "", f"*{captions[kind]}*"]
    weights = {w["sha256"]: (w, m.label) for m in report.metrics for w in m.weights}
    if weights:
        lines += ["", "## Weight files", "", "| metric | file | sha256 | check |", "|---|---|---|---|"]
        for w, label in weights.values():
            lines.append(f"| {label} | `{w['file']}` | `{w['sha256']}` | {w['check']} |")
    if report.timings_s:
        lines += ["", "## Time", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in report.timings_s.items()]
    return "\n".join(lines) + "\n"


def _plot_distributions(report: Report, path: Path) -> bool:
    import matplotlib.pyplot as plt

    metrics = [m for m in report.metrics if m.per_clip]
    if not metrics:
        return False
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    rng = np.random.default_rng(0)  # jitter only
    for ax, m in zip(axes.flat, metrics):
        groups = [(c, m.per_clip.get(c, {})) for c in report.conditions]
        if m.reference_per_clip:
            groups.append(("real", m.reference_per_clip))
        for i, (_, values) in enumerate(groups):
            v = np.array([x for x in values.values() if x is not None and np.isfinite(x)], dtype=float)
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=12, alpha=0.7)
            if len(v):
                ax.hlines(v.mean(), i - 0.3, i + 0.3, color="k")
        ax.set_xticks(range(len(groups)), [g[0] for g in groups], rotation=20, fontsize=8)
        ax.set_title(f"{m.label} {ARROWS.get(m.direction, '')}", fontsize=10)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    if finite.sum() < 2 or np.nanstd(x) == 0:
        return x - np.nanmean(x) if finite.any() else x
    return (x - np.nanmean(x)) / np.nanstd(x)


def _plot_mouth(report: Report, path: Path) -> bool:
    import matplotlib.pyplot as plt

    scored = {c: s for c, s in report.curve_scores.items() if c in report.curves and np.isfinite(s)}
    if not scored:
        return False
    best, worst = max(scored, key=scored.get), min(scored, key=scored.get)
    shown = [("best", best)] + ([("worst", worst)] if worst != best else [])
    fps = report.video["fps"] if report.video else FPS
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.6 * len(shown)), squeeze=False)
    for ax, (which, clip) in zip(axes[:, 0], shown):
        for name, series in report.curves[clip].items():
            ax.plot(np.arange(len(series)) / fps, _zscore(series), label=name, lw=1.2)
        ax.set_title(f"{which} lip sync: {clip} (r = {scored[clip]:.2f})", fontsize=10)
        ax.set_xlabel("seconds")
        ax.set_ylabel("z-score")
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _plot_contact_sheet(report: Report, path: Path) -> bool:
    import matplotlib.pyplot as plt

    sheet = report.contact_sheet
    if not sheet:
        return False
    rows = sheet["rows"]  # list of (label, (n, h, w, 3) uint8 frames)
    n = max(len(frames) for _, frames in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.7 * len(rows)), squeeze=False)
    for r, (label, frames) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(frames):
                ax.imshow(frames[c])
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------------------------------
# Writing: all files or none
# ---------------------------------------------------------------------------------------------------------------------
def check_output_dir(path: str | os.PathLike) -> Path:
    """Refuse an output folder that would be clobbered: a file, or a non-empty folder that is not a report.

    Call it before any work starts. A folder holding an earlier report (its ``metrics.json`` says so) is replaced.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MmgtError(f"{path}: the report folder is a file")
    if path.is_dir() and any(path.iterdir()) and not _is_report(path):
        raise MmgtError(f"{path}: folder is not empty and holds no earlier mmgt report; choose a new folder")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise MmgtError(f"{path}: cannot create the folder: {blocker} is a file")
    return path


def _is_report(path: Path) -> bool:
    try:
        return json.loads((path / "metrics.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_report(report: Report, out_dir: str | os.PathLike, plots: bool = True) -> Path:
    """Write ``metrics.json``, ``report.md`` and the PNGs into ``out_dir``: all of them, or none.

    The files are written into a hidden sibling folder that replaces ``out_dir`` only when complete
    (:func:`mmgt.utils.files.atomic_folder`; an earlier report there is removed after the swap).

    Args:
        report: what to write.
        out_dir: the report folder (new, empty, or an earlier report: see :func:`check_output_dir`).
        plots: draw the PNGs (needs matplotlib).

    Returns:
        ``out_dir / "report.md"``.
    """
    out_dir = check_output_dir(out_dir)
    with atomic_folder(out_dir) as tmp:
        tmp.mkdir()
        drawn: dict[str, str] = {}
        if plots:
            _use_agg_backend()
            for kind, draw in (
                ("distributions", _plot_distributions),
                ("mouth", _plot_mouth),
                ("contact_sheet", _plot_contact_sheet),
            ):
                if draw(report, tmp / f"{kind}.png"):
                    drawn[kind] = f"{kind}.png"
        (tmp / "metrics.json").write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
        (tmp / "report.md").write_text(markdown(report, drawn))
    return out_dir / "report.md"


def _use_agg_backend() -> None:
    try:
        import matplotlib
    except ImportError as e:
        raise MmgtError("the report's plots need matplotlib: pip install 'mmgt[eval]'") from e
    matplotlib.use("Agg", force=True)  # files only: never open a window
