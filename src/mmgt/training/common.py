"""Plain functions shared by the training entry points (STYLE §4.7: no Trainer class hierarchy).

Exact resume on CPU: every random draw of a training step (batch order, timesteps, noise, condition dropout, model
dropout) is derived from (seed, step, process index), so a run resumed from a checkpoint at step k produces the same
batches and losses from step k + 1 on as an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration

CHECKPOINT_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step-(\d+)$")


# ---------------------------------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------------------------------
def make_run_dir(output_root: str | os.PathLike, stage: str, name: str, resume: bool = False) -> Path:
    """``runs/<stage>/<name>``; a new run refuses to overwrite an existing folder that holds checkpoints."""
    run_dir = Path(output_root) / stage / name
    if not resume and (run_dir / CHECKPOINT_DIR).exists() and any((run_dir / CHECKPOINT_DIR).iterdir()):
        raise ValueError(f"{run_dir} already holds checkpoints; pass --resume to continue it or choose another name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def setup_accelerator(run_dir: Path, mixed_precision: str = "no", gradient_accumulation_steps: int = 1) -> Accelerator:
    """An Accelerator writing to ``run_dir`` (one process, N CPU processes or multi-GPU: unchanged code)."""
    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
        project_config=ProjectConfiguration(project_dir=str(run_dir), automatic_checkpoint_naming=False),
    )


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """A torch generator for one (step, process, stream): the source of all randomness of that step."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, rank, stream]).generate_state(1)[0]))


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
        raise ValueError("no trainable parameters")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps)
    if name == "adan":
        try:
            from adan_pytorch import Adan
        except ImportError as e:
            raise ValueError("optimizer 'adan' needs the adan-pytorch package: pip install adan-pytorch") from e
        return Adan(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as e:
            raise ValueError("optimizer 'adamw8bit' needs bitsandbytes: pip install bitsandbytes") from e
        return bnb.optim.AdamW8bit(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=eps)
    raise ValueError(f"unknown optimizer {name!r}; expected adamw, adan or adamw8bit")


def warmup_lambda(warmup_steps: int):
    """Linear warm-up to the base LR, then constant."""
    return lambda step: min(1.0, (step + 1) / max(1, warmup_steps))


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
