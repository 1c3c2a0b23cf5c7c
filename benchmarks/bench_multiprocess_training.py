"""Training across processes: 1 vs 2 synchronised CPU processes, and checkpoints that change process count.

For each stage (stage 1 SMGA, stage 2 image step; tiny models on a small synthetic dataset) it runs, through
``accelerate launch`` (``ACCELERATE_USE_CPU=1 ... --multi_gpu --num_processes 2`` is the form that starts 2 CPU
processes synchronised by gloo DDP):

* ``1p``: one process, batch B;
* ``2p``: two processes, batch B / 2 each (the same global batch);
* ``2p->1p``: two processes for half the steps, then ``--resume`` in one process;
* ``1p->2p``: one process for half the steps, then ``--resume`` in two processes.

and prints, per stage, the largest loss difference of every run against ``1p``, the largest difference of the final
checkpoint's tensors (weights, optimiser moments, EMA) against ``1p``'s, and the throughput ratio (samples/s of 2p
over 1p, timed between the half-way and the last checkpoint). ``--plot`` draws the loss curves; ``--json`` keeps
the numbers. Both stages draw a step's noise for the whole global batch (:func:`mmgt.training.common.process_rows`),
so the runs agree up to float summation order; model dropout is the one per-process draw, so it is set to 0 here.

    python benchmarks/bench_multiprocess_training.py --work /tmp/mp --plot docs/images/multiprocess_loss.png
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
STAGE1 = [
    "--config",
    str(ROOT / "configs/stage1/tiny.yaml"),
    "data.window_frames=40",
    "data.stride_frames=10",
    "model.overrides.dropout=0",
    "validation.every=0",
    "optim.warmup_steps=5",
    "log_every=1",
]
STAGE2 = [
    "--config",
    str(ROOT / "configs/stage2/tiny_image.yaml"),
    "data.size=64",
    "data.min_gap=5",
    "data.samples_per_clip=2",
    "validation.every=0",
    "log_every=1",
]


def command(processes: int) -> list[str]:
    """``accelerate launch`` of ``python -m mmgt`` in 1 or N synchronised CPU processes."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "--num_processes", str(processes)]
    return [*launch, *(["--multi_gpu"] if processes > 1 else []), "-m", "mmgt"]


def train(stage: str, processes: int, args: list[str], log: Path) -> float:
    """Run one training command; returns its wall time. Raises with the log's tail when it fails."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1"}
    sub = ["train", "stage1"] if stage == "stage1" else ["train", "stage2"]
    t0 = time.perf_counter()
    with log.open("a") as f:
        done = subprocess.run([*command(processes), *sub, *args], env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"{stage} {processes}-process run failed; see {log}:\n" + log.read_text()[-3000:])
    return time.perf_counter() - t0


def losses(run: Path) -> dict[int, float]:
    with (run / "train_log.csv").open() as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


def checkpoint_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint: model weights, exported modules, optimiser moments, EMA (name -> tensor)."""
    out = {}
    for path in sorted(folder.rglob("*.safetensors")):
        out |= {f"{path.relative_to(folder)}:{k}": v for k, v in load_file(path).items()}
    for path in sorted(folder.glob("*.bin")) + sorted(folder.glob("custom_checkpoint_*.pkl")):
        _flatten(torch.load(path, map_location="cpu", weights_only=False), path.name, out)
    return out


def _flatten(obj, prefix: str, out: dict) -> None:
    if isinstance(obj, torch.Tensor) and obj.is_floating_point():
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}", out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}.{i}", out)


def samples_per_s(run: Path, steps: int, global_batch: int) -> float:
    """Samples/s between the half-way checkpoint and the last one (their ``trainer_state.json`` times)."""
    times = [
        json.loads((run / "checkpoints" / f"step-{s:07d}/trainer_state.json").read_text())["time"]
        for s in (steps // 2, steps)
    ]
    return (steps - steps // 2) * global_batch / (times[1] - times[0])


def run_stage(stage: str, work: Path, data: Path, steps: int, batch: int, extra: list[str]) -> dict:
    """The four runs of one stage and their comparison against the one-process run."""
    out = work / "runs"
    base = [*(STAGE1 if stage == "stage1" else STAGE2), *extra, f"data.root={data}", f"output_root={out}"]
    base += [f"checkpoint_every={steps // 2}", "checkpoints_total_limit=0"]
    log = work / f"{stage}.log"
    runs = {
        "1p": [(1, steps)],
        "2p": [(2, steps)],
        "2p->1p": [(2, steps // 2), (1, steps)],
        "1p->2p": [(1, steps // 2), (2, steps)],
    }
    walls = {}
    for name, legs in runs.items():
        folder = name.replace("->", "_to_")
        for i, (processes, until) in enumerate(legs):
            args = [*base, f"name={folder}", f"max_steps={until}", f"batch_size={batch // processes}"]
            walls[name] = walls.get(name, 0.0) + train(stage, processes, [*args, *(["--resume"] if i else [])], log)
        print(f"{stage} {name}: {walls[name]:.0f} s wall", flush=True)
    folders = {name: out / stage / name.replace("->", "_to_") for name in runs}
    curves = {name: losses(folder) for name, folder in folders.items()}
    last = {name: checkpoint_tensors(folder / "checkpoints" / f"step-{steps:07d}") for name, folder in folders.items()}
    result = {"steps": steps, "global_batch": batch, "curves": curves, "runs": {}}
    for name in runs:
        diffs = [abs(curves[name][s] - curves["1p"][s]) for s in curves["1p"]]
        common = sorted(set(last[name]) & set(last["1p"]))
        weight = max(float((last[name][k].float() - last["1p"][k].float()).abs().max()) for k in common)
        result["runs"][name] = {
            "max_abs_loss_diff": max(diffs),
            "max_rel_loss_diff": max(d / abs(curves["1p"][s]) for d, s in zip(diffs, curves["1p"])),
            "max_abs_tensor_diff": weight,
            "tensors_compared": len(common),
            "wall_s": walls[name],
        }
    rates = {name: samples_per_s(folders[name], steps, batch) for name in ("1p", "2p")}
    result["samples_per_s"] = rates
    result["throughput_ratio_2p_over_1p"] = rates["2p"] / rates["1p"]
    return result


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8))
    styles = {"1p": ("-", 3.0), "2p": ("--", 2.0), "2p->1p": (":", 2.0), "1p->2p": ("-.", 1.5)}
    for ax, (stage, res) in zip(axes if len(results) > 1 else [axes], results.items()):
        for name, curve in res["curves"].items():
            ls, lw = styles[name]
            ax.plot(list(curve), list(curve.values()), ls, lw=lw, label=name)
        ax.axvline(res["steps"] // 2, color="grey", lw=0.8)
        ax.set(title=f"{stage} (global batch {res['global_batch']})", xlabel="step", ylabel="training loss")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a new folder for the dataset, runs and logs")
    parser.add_argument("--data", type=Path, help="a dataset folder (default: `mmgt synth` 24 clips at 64 px)")
    parser.add_argument("--stages", nargs="+", default=["stage1", "stage2"], choices=["stage1", "stage2"])
    parser.add_argument("--steps", type=int, default=40, help="stage-1 steps (stage 2 runs half as many)")
    parser.add_argument("--plot", type=Path, help="PNG of the loss curves")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        data = args.work / "synth"
        if not (data / "manifest.jsonl").is_file():
            synth = ["synth", "--out", str(data), "--clips", "24", "--seconds", "2.4", "--size", "64"]
            subprocess.run([sys.executable, "-m", "mmgt", *synth, "--identities", "2", "--quiet"], check=True)
    results = {}
    for stage in args.stages:
        if stage == "stage1":
            extra = [f"data.cache_dir={args.work / 'features'}"]
            results[stage] = run_stage(stage, args.work, data, args.steps, 16, extra)
        else:
            vae = args.work / "vae"
            if not (vae / "config.json").is_file():
                from mmgt.training.stage2_components import build_components

                torch.manual_seed(0)
                build_components("tiny")["vae"].save_pretrained(vae)  # random frozen VAE (no VAE training here)
            results[stage] = run_stage(stage, args.work, data, max(2, args.steps // 2), 4, [f"vae={vae}"])
    print(f"\ntorch {torch.__version__}, {os.cpu_count()} CPUs; differences against the 1-process run:")
    print("| stage | run | max abs loss diff | max rel loss diff | max abs tensor diff (final checkpoint) |")
    print("|---|---|---|---|---|")
    for stage, res in results.items():
        for name, r in res["runs"].items():
            print(
                f"| {stage} | {name} | {r['max_abs_loss_diff']:.2e} | {r['max_rel_loss_diff']:.2e} |"
                f" {r['max_abs_tensor_diff']:.2e} ({r['tensors_compared']} tensors) |"
            )
    print("\n| stage | global batch | steps | 1p samples/s | 2p samples/s | ratio |")
    print("|---|---|---|---|---|---|")
    for stage, res in results.items():
        rates = res["samples_per_s"]
        print(
            f"| {stage} | {res['global_batch']} | {res['steps']} | {rates['1p']:.1f} | {rates['2p']:.1f} |"
            f" {res['throughput_ratio_2p_over_1p']:.2f} |"
        )
    if args.plot:
        plot(results, args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
