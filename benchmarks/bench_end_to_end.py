"""End to end on CPU, then (a baseline checkout) against now: ``mmgt demo`` on the same 10 s of new speech.

Usage:
    python benchmarks/bench_end_to_end.py --baseline-src /work/wt/start/src [--repeats 2] [--memory]
    python benchmarks/bench_end_to_end.py --baseline-commit e697d53 [--repeats 2]

Each side is this repository's interpreter running ``python -m mmgt demo --audio SPEECH -o OUT --quiet`` (the bundled
model, its own sampling defaults, the preview included: the README's first command) in a fresh process with
``PYTHONPATH`` set to that side's ``src``; the runs alternate (baseline, now, baseline, now, ...) so both sides see
the same machine load. Wall time covers everything from the process start (imports, model load, both stages,
encoding); peak RSS is the process's own (``os.wait4``). The speech is made here by ``espeak-ng`` from sentences the
project never used, cut to exactly ``--seconds``. ``--baseline-commit`` checks that commit out with
``git worktree add`` into a temporary folder (removed afterwards).

``--memory`` also runs "now" on 6 s and 60 s of speech and compares the peak RSS (flat: within 1.2x).

Prints one table: wall time (each run and the median) and peak RSS per side, and the ratio baseline / now.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Sentences no other part of the project speaks (espeak-ng, default English voice).
SENTENCES = (
    "Lighthouse keepers once traded stories about the fog, counting the ships that slipped past the rocks at dawn.",
    "A violin maker in the valley tunes each instrument by ear, then leaves it to rest through the winter.",
    "The orchard ladder leaned against the wall while two children argued about the ripest pear on the branch.",
    "Copper kettles hummed on the stove as the baker folded raisins into dough for the market on Saturday.",
    "Far above the glacier a pair of ravens circled slowly, calling to one another across the thin blue air.",
    "The night train to the coast stopped at every sleepy village, and the conductor knew each passenger by name.",
)
FLAT_LIMIT = 1.2  # 60 s of speech may peak at most this much above 6 s (issue 16)


def make_speech(path: Path, seconds: float) -> Path:
    """Speak :data:`SENTENCES` (repeated as needed) with espeak-ng and cut the wav to exactly ``seconds``."""
    frames, params = b"", None
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(1000):
            part = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-w", str(part), SENTENCES[i % len(SENTENCES)]], check=True)
            with wave.open(str(part)) as w:
                params = w.getparams()
                frames += w.readframes(w.getnframes())
            if len(frames) >= seconds * params.framerate * params.sampwidth:
                break
    with wave.open(str(path), "wb") as w:
        w.setparams(params)
        w.writeframes(frames[: int(seconds * params.framerate) * params.sampwidth])
    return path


def run_demo(src: Path, speech: Path, out: Path, threads: int | None) -> tuple[float, float]:
    """``mmgt demo`` on ``speech`` with the code in ``src``; returns (wall seconds, peak RSS in MiB)."""
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "mmgt", "demo", "--audio", str(speech), "-o", str(out), "--quiet"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{src}: mmgt demo failed:\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = p.add_mutually_exclusive_group(required=True)
    base.add_argument("--baseline-src", type=Path, help="the baseline's src folder (a checkout of the start)")
    base.add_argument("--baseline-commit", help="check this commit out with `git worktree add` and use its src")
    p.add_argument("--seconds", type=float, default=10.0, help="speech length (default 10)")
    p.add_argument("--repeats", type=int, default=2, help="runs per side, alternating (default 2)")
    p.add_argument("--threads", type=int, default=None, help="OMP/MKL threads for both sides (default: torch's)")
    p.add_argument("--memory", action="store_true", help="also the memory flatness check (now: 6 s vs 60 s)")
    p.add_argument("--work", type=Path, default=None, help="folder for speech and outputs (default: a temp folder)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        worktree = None
        if args.baseline_commit:
            worktree = work / "baseline"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.baseline_commit],
                check=True,
                capture_output=True,
            )
        try:
            sides = {"baseline": (worktree / "src") if worktree else args.baseline_src.resolve(), "now": REPO / "src"}
            speech = make_speech(work / "speech.wav", args.seconds)
            print(
                f"speech: {args.seconds:g} s of espeak-ng; machine: {os.cpu_count()} CPUs; threads: "
                f"{args.threads or 'default'}",
                flush=True,
            )
            runs = {name: [] for name in sides}
            for r in range(args.repeats):
                for name, src in sides.items():
                    runs[name].append(run_demo(src, speech, work / f"{name}_{r}.mp4", args.threads))
                    print(f"  run {r + 1} {name}: {runs[name][-1][0]:.1f} s, {runs[name][-1][1]:.0f} MiB", flush=True)
            print_table(sides, runs)
            if args.memory:
                memory_check(sides["now"], work, args.threads)
        finally:
            if worktree is not None:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False)


def print_table(sides: dict, runs: dict) -> None:
    """Wall time and peak RSS per side; the ratios baseline / now (median wall, and per alternating pair)."""
    median = {name: statistics.median(w for w, _ in rs) for name, rs in runs.items()}
    print("\n| side | code | wall per run (s) | median wall (s) | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for name, src in sides.items():
        walls = ", ".join(f"{w:.1f}" for w, _ in runs[name])
        print(f"| {name} | {src} | {walls} | {median[name]:.1f} | {max(m for _, m in runs[name]):.0f} |")
    pairs = [b[0] / n[0] for b, n in zip(runs["baseline"], runs["now"], strict=True)]
    print(
        f"\nspeed-up (median wall, baseline / now): {median['baseline'] / median['now']:.2f}x; per pair: "
        + ", ".join(f"{r:.2f}x" for r in pairs)
    )


def memory_check(src: Path, work: Path, threads: int | None) -> None:
    """Peak RSS of "now" on 6 s and on 60 s of speech; flat if the ratio is within :data:`FLAT_LIMIT`."""
    peaks = {}
    for seconds in (6.0, 60.0):
        speech = make_speech(work / f"speech_{seconds:g}s.wav", seconds)
        wall, peaks[seconds] = run_demo(src, speech, work / f"memory_{seconds:g}s.mp4", threads)
        print(f"  now, {seconds:g} s of speech: {wall:.1f} s, {peaks[seconds]:.0f} MiB", flush=True)
    ratio = peaks[60.0] / peaks[6.0]
    verdict = "flat" if ratio <= FLAT_LIMIT else "NOT flat"
    print(
        f"\nmemory: 60 s / 6 s peak RSS = {peaks[60.0]:.0f} / {peaks[6.0]:.0f} MiB = {ratio:.2f}x ({verdict}, "
        f"limit {FLAT_LIMIT}x)"
    )


if __name__ == "__main__":
    main()
