"""Crash safety, measured: ``kill -9`` a training run at random moments, resume it each time, compare.

1. An uninterrupted ``rnnkit train`` run (the reference) in its own process; its wall time sets
   the scale of the random kill moments.
2. The same run again, killed with SIGKILL at random moments: ``kills`` target steps are drawn
   uniformly over the run and sorted; a kill waits until the run has evaluated the step before
   its target (``metrics.jsonl``), then a random time up to one evaluation interval (so it lands
   in a step, an evaluation or a checkpoint write alike). One kill in five lands instead during
   a process's start-up (uniform in its first second: imports, loading and verifying the
   checkpoint). After each kill the run is continued with ``rnnkit train --resume`` (or started afresh if the kill came
   before its first checkpoint), again and again until ``--kills`` kills have been sent; then
   resumed until it finishes. (Should the run finish before all kills are sent, it starts over
   in a new folder, so every kill counted lands in the run that is compared.)
3. The final weights' SHA-256 (over the tensors' names, dtypes, shapes and bytes) must equal the
   reference's, and ``metrics.jsonl`` must hold the same steps, each once.

Usage:
    python tests/kill_resume.py --task text --kills 20 [--seed 0] [--json PATH]
    python tests/kill_resume.py --task reber --kills 20
    python tests/kill_resume.py --task adding --kills 20

``tests/test_kill_resume.py`` runs a short version (3 kills) in CI.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

CORPUS = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
          "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
          "it was the season of Darkness. ") * 12
# small, fast configurations that still exercise everything a resume must restore
FLAGS = {
    "text": ["--task", "text", "--hidden", "32", "--layers", "2", "--embedding", "8", "--dropout", "0.1",
             "--batch-size", "4", "--bptt", "16", "--steps", "600", "--warmup", "20", "--eval-every", "25",
             "--threads", "1"],
    "reber": ["--task", "embedded-reber", "--hidden", "16", "--layers", "2", "--dropout", "0.1", "--steps", "600",
              "--eval-every", "25", "--eval-size", "100", "--keep-going", "--decay", "cosine", "--warmup", "10"],
    "adding": ["--task", "adding", "--hidden", "16", "--seq-len", "20", "--batch-size", "16", "--steps", "600",
               "--eval-every", "25", "--eval-size", "100", "--keep-going", "--decay", "cosine"],
}
STARTUP_SHARE = 0.2  # the share of kills sent during a process's start-up rather than its training
COMMON = ["--checkpoint-interval", "0.01s", "--no-plot", "--no-tensorboard", "--quiet", "--seed", "3"]


def weights_sha256(run: Path) -> str:
    """SHA-256 over the checkpoint's tensors, by name: name, dtype, shape and bytes of each."""
    folder = run / "checkpoint"
    manifest = json.loads((folder / "manifest.json").read_text())
    tensors = safetensors.torch.load_file(folder / manifest["files"]["weights"]["name"])
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _steps(run: Path) -> list[tuple[int, bool]]:
    """(step, final) of every metrics.jsonl row (a text run scores its last step twice: periodic and final)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(row["step"], bool(row.get("final"))) for row in rows]


def _checkpoint_step(run: Path) -> int | None:
    from rnnkit.checkpoint import load_training_state

    if not (run / "checkpoint" / "manifest.json").is_file():
        return None
    return load_training_state(run / "checkpoint").step


def _stamp(path: Path) -> tuple[int, int] | None:
    """(inode, mtime in ns) of ``path``, None if absent: it changes when the file is rewritten."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _last_step(run: Path) -> int:
    """The step of the last whole row of ``metrics.jsonl`` (0 when it has none)."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue  # a row being written
    return 0


def _train(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rnnkit.cli", "train", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def run(task: str, kills: int, seed: int, work: Path, steps: int | None = None) -> dict[str, Any]:
    """Kill and resume one run ``kills`` times; return the figures (see the module docstring)."""
    data = work / "corpus.txt"
    data.write_text(CORPUS, encoding="utf-8")
    flags = FLAGS[task] + COMMON + (["--data", str(data)] if task == "text" else [])
    if steps is not None:
        flags[flags.index("--steps") + 1] = str(steps)
    reference, killed = work / "reference", work / "killed"
    began = time.perf_counter()
    done = _train([*flags, "--out", str(reference)])
    _, err = done.communicate()
    if done.returncode != 0:
        raise RuntimeError(f"the reference run failed: {err.strip()[-500:]}")
    wall = time.perf_counter() - began
    loop = json.loads((reference / "summary.json").read_text())["loop_seconds"]
    rng = random.Random(seed)
    steps_total = int(flags[flags.index("--steps") + 1])
    every = int(flags[flags.index("--eval-every") + 1])
    targets = sorted(rng.uniform(0, steps_total - every) for _ in range(kills))  # where the training kills land
    per_eval = loop * every / steps_total  # seconds between evaluations
    landed: list[dict[str, Any]] = []
    launches = restarts = 0
    while True:
        fresh = _checkpoint_step(killed) is None
        mark = _stamp(killed / "metrics.jsonl")
        proc = _train([*flags, "--out", str(killed)] if fresh else ["--resume", str(killed), "--quiet"])
        launches += 1
        if len(landed) >= kills:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"the last resume failed ({proc.returncode}): {err.strip()[-500:]}")
            break
        target = targets[sum(1 for k in landed if k["during"] == "training")]
        if rng.random() < STARTUP_SHARE:  # during start-up: imports, loading and verifying the checkpoint
            moment, delay = "start-up", rng.uniform(0.0, 1.0)
        else:  # during training, past the evaluation before the target step; then anywhere up to the next one
            while proc.poll() is None and (_stamp(killed / "metrics.jsonl") == mark or
                                           _last_step(killed) < target // every * every):
                time.sleep(0.005)
            moment, delay = "training", rng.uniform(0.0, per_eval)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            landed.append({"during": moment, "after_seconds": round(delay, 3),
                           "checkpoint_step": _checkpoint_step(killed)})
            continue
        if proc.returncode != 0:
            raise RuntimeError(f"a resumed run failed ({proc.returncode}): {proc.stderr.read().strip()[-500:]}")
        # it finished before all kills were sent: start over on a fresh folder, so that every kill
        # counted lands inside the run whose weights are compared
        restarts += 1
        landed = []
        killed = work / f"killed-{launches}"
    expected, got = weights_sha256(reference), weights_sha256(killed)
    result = {"task": task, "kills": len(landed), "launches": launches, "restarts": restarts, "seed": seed,
              "reference_wall_seconds": round(wall, 2), "reference_loop_seconds": loop,
              "kill_targets": [round(t, 1) for t in targets], "kill_moments": landed,
              "reference_sha256": expected, "resumed_sha256": got,
              "equal": expected == got, "metrics_steps_equal": _steps(reference) == _steps(killed),
              "metrics_steps_unique": len(set(_steps(killed))) == len(_steps(killed))}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(FLAGS), default="text")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="the run's step budget (default: 600)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        result = run(args.task, args.kills, args.seed, Path(work), args.steps)
    text = json.dumps(result, indent=1)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome["equal"] and outcome["metrics_steps_equal"] and outcome["metrics_steps_unique"] else 1)
