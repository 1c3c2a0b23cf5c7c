"""Plain functions shared by the training entry points (STYLE §4.7: no Trainer class hierarchy).

Exact resume on CPU: every random draw of a training step (batch order, timesteps, noise, condition dropout, model
dropout) is derived from (seed, step, process index), so a run resumed from a checkpoint at step k produces the same
batches and losses from step k + 1 on as an uninterrupted run. Both stages draw their noise, timesteps and
condition dropout for the whole global batch (:func:`process_rows`), so its runs also agree across process counts
(docs/training.md).

Every entry point runs in the same order: check everything the run needs (:mod:`mmgt.training.preflight`; nothing
is written yet), build the data and models, :func:`start_run` (disk space, run folder, config, resume), the loop,
then the final export (:func:`mmgt.utils.files.atomic_folder`) BEFORE the final validation
(:func:`validate_or_warn`), so no validation failure can lose the model.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration
from torch import nn

from mmgt.config import OptimSection, save_config
from mmgt.errors import MmgtError, ModelFolderError, debug_enabled
from mmgt.utils.files import error_summary

logger = logging.getLogger(__name__)
CHECKPOINT_DIR = "checkpoints"
OPTIMIZERS = ("adamw", "adan", "adamw8bit")
MIXED_PRECISION = ("no", "fp16", "bf16")
_STEP_RE = re.compile(r"^step-(\d+)$")


# ---------------------------------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------------------------------
def run_folder(output_root: str | os.PathLike, stage: str, name: str) -> Path:
    """``<output_root>/<stage>/<name>``: the folder a run writes to (not created here)."""
    return Path(output_root) / stage / name


def check_run_folder(run_dir: Path, resume: bool) -> None:
    """A new run refuses a folder that already holds checkpoints; ``--resume`` needs a complete checkpoint."""
    if resume and latest_checkpoint(run_dir) is None:
        raise MmgtError(f"--resume: {run_dir} has no complete checkpoint")
    if not resume and (run_dir / CHECKPOINT_DIR).is_dir() and any((run_dir / CHECKPOINT_DIR).iterdir()):
        raise MmgtError(f"{run_dir} already holds checkpoints; pass --resume to continue it or choose another name")


def make_run_dir(output_root: str | os.PathLike, stage: str, name: str, resume: bool = False) -> Path:
    """Create ``<output_root>/<stage>/<name>`` after :func:`check_run_folder`."""
    run_dir = run_folder(output_root, stage, name)
    check_run_folder(run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def setup_accelerator(run_dir: Path, mixed_precision: str = "no", gradient_accumulation_steps: int = 1) -> Accelerator:
    """An Accelerator writing to ``run_dir`` (one process, N CPU processes or multi-GPU: unchanged code).

    The LR schedules count optimiser steps, so the prepared scheduler steps once per ``lr_scheduler.step()``
    (``step_scheduler_with_optimizer=False``); accelerate's default steps it once per process, which made the
    warm-up N times shorter in N processes.
    """
    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
        project_config=ProjectConfiguration(project_dir=str(run_dir), automatic_checkpoint_naming=False),
    )


class RunStart(NamedTuple):
    """What :func:`start_run` hands the loop."""

    step: int  # the first step to run: 0, or the step of the checkpoint resumed from
    log: CSVLog | None  # train_log.csv (main process only)
    val_log: CSVLog | None  # val_log.csv (main process only)


def start_run(accelerator: Accelerator, cfg, stage: str, resume: bool, checkpoint_bytes: int) -> RunStart:
    """Start or resume ``<cfg.output_root>/<stage>/<cfg.name>``, once every model and optimiser is prepared.

    1. Refuse (one line) when the checkpoints the run keeps and the final export do not fit on the disk.
    2. Create the run folder and write the resolved ``config.yaml`` (main process).
    3. ``resume``: load the latest complete checkpoint (models, optimiser, LR schedule and everything registered with
       ``accelerator.register_for_checkpointing``); every later random draw depends only on (seed, step, process).

    Args:
        cfg: a training config with ``output_root``, ``name``, ``max_steps``, ``checkpoint_every`` and
            ``checkpoints_total_limit`` (``Stage1Train``, ``VaeTrain``, ``Stage2Train``).
        checkpoint_bytes: the estimated size of one checkpoint (:func:`checkpoint_size`).
    """
    run_dir = run_folder(cfg.output_root, stage, cfg.name)
    found = latest_checkpoint(run_dir) if resume else None
    start = found[1] if found else 0
    saves = len(range(start + cfg.checkpoint_every, cfg.max_steps + cfg.checkpoint_every, cfg.checkpoint_every))
    kept = saves if cfg.checkpoints_total_limit <= 0 else min(saves, cfg.checkpoints_total_limit + 1)  # +1: old
    check_free_space(run_dir, kept * checkpoint_bytes + checkpoint_bytes, f"{kept} checkpoints and the export")
    run_dir = make_run_dir(cfg.output_root, stage, cfg.name, resume=resume)
    if accelerator.is_main_process:
        save_config(cfg, run_dir / "config.yaml")
    if found:
        accelerator.load_state(str(found[0]))
        logger.info("resumed from %s", found[0])
    if not accelerator.is_main_process:
        return RunStart(start, None, None)
    resume_step = start if resume else None  # on resume, rows after the checkpoint's step are dropped
    return RunStart(start, *(CSVLog(run_dir / f"{name}.csv", resume_step) for name in ("train_log", "val_log")))


def checkpoint_size(model: nn.Module, extra_copies: int = 0) -> int:
    """Estimated bytes of one checkpoint of ``model`` (a rough upper bound; the disk check needs no more).

    The model's whole state (``save_state``), AdamW's two moments per trainable parameter, the ``save_pretrained``
    export of the trained modules, and ``extra_copies`` more copies of the trainable weights (an EMA).
    """
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return state + (3 + extra_copies) * trainable


def check_free_space(path: Path, needed: int, what: str) -> None:
    """Raise unless the disk holding ``path`` (or its nearest existing parent) has ``needed`` bytes free."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise MmgtError(
            f"{path}: {what} need about {needed / 2**30:.2f} GiB, but only {free / 2**30:.2f} GiB is free there "
            "(lower checkpoints_total_limit or free some space)"
        )


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """A torch generator for one (step, process, stream): the source of all randomness of that step."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, rank, stream]).generate_state(1)[0]))


def process_rows(batch_size: int, process_index: int) -> slice:
    """This process's rows of a draw made for the whole global batch (``batch_size`` rows per process).

    Drawing a step's noise and timesteps for the global batch from one (seed, step) generator on every process and
    keeping these rows gives each sample the same draws whatever the number of processes: N processes with batch b
    then train exactly like one process with batch N * b (up to the order of float sums in the gradient all-reduce).
    """
    return slice(process_index * batch_size, (process_index + 1) * batch_size)


def seed_step(seed: int, step: int, rank: int = 0) -> None:
    """Seed the global torch RNG (model dropout) from (seed, step, process)."""
    torch.manual_seed(int(np.random.SeedSequence([seed, step, rank, 99]).generate_state(1)[0]))


def batch_indices(
    num_items: int, batch_size: int, step: int, seed: int, num_processes: int = 1, process_index: int = 0
) -> list[int]:
    """Dataset indices of this process's batch at ``step`` (0-based), from a per-epoch seeded permutation.

    The global batch is ``batch_size * num_processes`` items; epochs are consecutive permutations of the dataset.
    """
    global_batch = batch_size * num_processes
    out = []
    start = step * global_batch + process_index * batch_size
    for k in range(start, start + batch_size):
        epoch, offset = divmod(k, num_items)
        perm = np.random.default_rng([seed, epoch]).permutation(num_items)
        out.append(int(perm[offset]))
    return out


def collate(items: list[dict]) -> dict:
    """Stack tensors, keep lists of everything else (ids, starts); lists of tensors (mask levels) stack per level."""
    out = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], list) and values[0] and isinstance(values[0][0], torch.Tensor):
            out[key] = [torch.stack(level) for level in zip(*values)]
        else:
            out[key] = values
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Optimisation
# ---------------------------------------------------------------------------------------------------------------------
def build_optimizer(
    params: Iterable[torch.nn.Parameter] | list[dict],
    name: str = "adamw",
    lr: float = 1e-4,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """AdamW (default), Adan (``adan-pytorch`` package) or 8-bit AdamW (``bitsandbytes``).

    ``params`` is an iterable of parameters or a list of torch parameter groups (``{"params": [...], "lr": ...}``);
    frozen parameters are dropped, and so are groups left empty.
    """
    params = list(params)
    if params and isinstance(params[0], dict):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in params]
        params = [g for g in groups if g["params"]]
    else:
        params = [p for p in params if p.requires_grad]
    if not params:
        raise MmgtError("no trainable parameters")
    if name not in OPTIMIZERS:
        raise MmgtError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps)
    if name == "adan":
        try:
            from adan_pytorch import Adan
        except ImportError as e:
            raise MmgtError("optimizer 'adan' needs the adan-pytorch package: pip install adan-pytorch") from e
        return Adan(params, lr=lr, weight_decay=weight_decay)
    try:  # adamw8bit
        import bitsandbytes as bnb
    except ImportError as e:
        raise MmgtError("optimizer 'adamw8bit' needs bitsandbytes: pip install bitsandbytes") from e
    return bnb.optim.AdamW8bit(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps)


def warmup_lambda(warmup_steps: int):
    """Linear warm-up to the base LR, then constant."""
    return lambda step: min(1.0, (step + 1) / max(1, warmup_steps))


def prepare_optimisation(
    accelerator: Accelerator, model: nn.Module, optim: OptimSection, params: Iterable | None = None
) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The run's optimiser (:func:`build_optimizer` of ``params``, default the model's parameters) and LR schedule
    (linear warm-up, then constant), prepared with ``model`` by accelerate; returns the prepared three."""
    params = model.parameters() if params is None else params
    optimizer = build_optimizer(params, optim.name, optim.lr, optim.weight_decay, tuple(optim.betas))
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(optim.warmup_steps))
    return accelerator.prepare(model, optimizer, lr_scheduler)


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints and logs
# ---------------------------------------------------------------------------------------------------------------------
def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step-{step:07d}"


def latest_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """The newest complete checkpoint of a run and its step, or None."""
    root = run_dir / CHECKPOINT_DIR
    found = []
    for p in root.glob("step-*") if root.is_dir() else []:
        m = _STEP_RE.match(p.name)
        if m and (p / "trainer_state.json").is_file():  # written last: marks the checkpoint complete
            found.append((int(m.group(1)), p))
    if not found:
        return None
    step, path = max(found)
    return path, step


def save_checkpoint(accelerator: Accelerator, run_dir: Path, step: int, exports: dict, total_limit: int = 3) -> Path:
    """``accelerator.save_state`` plus a ``save_pretrained`` export of each model in ``exports`` (name -> model).

    ``trainer_state.json`` is written last, so an interrupted save is never picked up by ``--resume``.
    """
    path = checkpoint_dir(run_dir, step)
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        for name, model in exports.items():
            accelerator.unwrap_model(model).save_pretrained(path / name)
        (path / "trainer_state.json").write_text(json.dumps({"step": step, "time": time.time()}))
        complete = sorted(p for p in (run_dir / CHECKPOINT_DIR).glob("step-*") if (p / "trainer_state.json").is_file())
        for old in complete[:-total_limit] if total_limit > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def validate_or_warn(what: str, step: int, validate: Callable[[], object]) -> None:
    """Run one validation; a failure is one warning and the run goes on (its checkpoints and export are kept).

    Why: validation runs on the main process only, so an exception there would end the run without its export, or
    leave the other processes waiting forever. ``MMGT_DEBUG=1`` (``mmgt --debug``) adds the traceback.
    """
    try:
        validate()
    except Exception as e:  # noqa: BLE001 - reported, never silenced; the run's product is the model
        logger.warning(
            "%s validation at step %d failed (the run goes on): %s: %s",
            what,
            step,
            type(e).__name__,
            error_summary(e),
            exc_info=debug_enabled(),
        )


class CSVLog:
    """Append-only CSV of named scalars per step; on resume, rows after the resumed step are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        self.fields: list[str] | None = None
        if resume_step is not None and path.is_file():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            if rows:
                self.fields = list(rows[0].keys())
                with path.open("w", newline="") as f:
                    w = csv.DictWriter(f, self.fields)
                    w.writeheader()
                    w.writerows(rows)
        elif path.exists():
            path.unlink()

    def log(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{k: float(v) for k, v in values.items()}}
        new = not self.path.exists() or self.fields is None
        if self.fields is None:
            self.fields = list(row.keys())
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, self.fields)  # a key the header lacks raises: nothing is dropped silently
            if new:
                w.writeheader()
            w.writerow(row)


def reduce_mean(accelerator: Accelerator, values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Average scalar tensors across processes (DiT-style all-reduce) for logging."""
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys]).to(accelerator.device)
    stacked = accelerator.reduce(stacked, reduction="mean")
    return {k: float(v) for k, v in zip(keys, stacked.cpu())}


# ---------------------------------------------------------------------------------------------------------------------
# The two steps every training loop repeats
# ---------------------------------------------------------------------------------------------------------------------
def optimizer_step(
    accelerator: Accelerator, loss: torch.Tensor, params, optimizer, lr_scheduler, grad_clip: float
) -> None:
    """Backward, optional gradient clipping (``grad_clip`` <= 0 disables it), optimiser and LR-schedule step."""
    accelerator.backward(loss)
    if grad_clip > 0:
        accelerator.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def log_losses(accelerator: Accelerator, log: CSVLog | None, bar, step: int, losses: dict, lr_scheduler) -> None:
    """Average the named losses over processes, append them (and the LR) to the CSV, show the total on the bar."""
    values = reduce_mean(accelerator, losses)
    if log is not None:
        log.log(step, {**values, "lr": lr_scheduler.get_last_lr()[0]})
    bar.set_postfix(loss=f"{values['loss']:.4f}")


def load_folder(cls, folder, what: str):
    """``cls.from_pretrained(folder)`` from a local folder, with a one-line error naming ``what`` when it is absent."""
    if not folder or not (Path(folder) / "config.json").is_file():
        raise ModelFolderError(f"{what}: no model folder at {folder!r} (expected a config.json there)")
    return cls.from_pretrained(folder, local_files_only=True)
