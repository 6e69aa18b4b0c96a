"""Checkpoint fuzz over a whole run folder (issue 11, acceptance 4).

One small run folder is made once with the Trainer (a tiny Reber model, a few steps); each
mutation changes a copy's files, and every loader runs on it:

- ``load_checkpoint(run)``: what ``eval``, ``sample``, ``info`` and ``rnnkit.load`` read (model files);
- ``load_checkpoint(run, training_state=True)``: what ``--resume`` reads (every file).

**Damage** (the manifest's hashes left as they were): truncation, bit flips, zeroed ranges,
inserted bytes, edited JSON, swapped and deleted files. Each loader either raises a one-line
``CheckpointError`` that names a changed file, or returns content identical to the original
(tensors bit for bit, config, vocab, metadata, training state): changed data is never loaded.
When only the training state is damaged, the model loaders must succeed.

**Forgeries** (the manifest re-hashed after the change, as a crafted checkpoint would be): the
loaders must not crash (only ``CheckpointError`` naming a file of the folder), and a model that
loads holds exactly the tensors its weights file now holds.

``python tests/test_checkpoint_fuzz.py [N]`` prints the tally by kind and outcome.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from rnnkit.checkpoint import CHECKPOINT_DIR, CheckpointError, config_to_json, load_checkpoint
from rnnkit.checkpoint.state import training_state_to_json

DAMAGE = ("truncate", "bitflip", "zero", "insert", "json_edit", "swap", "delete")
FORGERY = ("truncate", "bitflip", "zero", "insert", "json_edit")
MODEL_ROLES = ("model", "weights", "vocab", "metadata")
MUTATIONS = 2100  # damage; plus a quarter as many forgeries


def make_run(out: Path) -> Path:
    """A finished run folder of a tiny Reber model: a few steps, one checkpoint with a training state."""
    from rnnkit.training.config import make_config
    from rnnkit.training.trainer import Trainer

    config = make_config("reber", overrides=dict(hidden_size=8, steps=3, eval_every=0, eval_size=20, plot=False,
                                                 tensorboard=False, out=str(out), threads=1))
    Trainer(config, progress=False).fit()
    return out


def _bits(tensor: torch.Tensor) -> tuple:
    t = tensor.detach().cpu().contiguous()
    return str(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def model_content(ckpt: Any) -> tuple:
    state = ckpt.model.state_dict()
    return (ckpt.model_type, repr(config_to_json(ckpt.config)), repr(ckpt.vocab), repr(ckpt.metadata),
            {name: _bits(t) for name, t in state.items()})


def training_content(ckpt: Any) -> tuple:
    doc, tensors = training_state_to_json(ckpt.training_state)
    return repr(doc), {name: _bits(t) for name, t in tensors.items()}


class Folder:
    """A working copy of a run folder that mutations change and ``restore`` puts back."""

    def __init__(self, source: Path, work: Path) -> None:
        shutil.copytree(source, work)
        self.run, self.checkpoint = work, work / CHECKPOINT_DIR
        self.original = {p.name: p.read_bytes() for p in self.checkpoint.iterdir()}
        manifest = json.loads(self.original["manifest.json"])
        self.role_of = {entry["name"]: role for role, entry in manifest["files"].items()}
        self.role_of["manifest.json"] = "manifest"

    def write(self, changes: dict[str, bytes | None]) -> None:
        for name, data in changes.items():
            if data is None:
                (self.checkpoint / name).unlink()
            else:
                (self.checkpoint / name).write_bytes(data)

    def restore(self, changes: dict[str, bytes | None]) -> None:
        for name in changes:
            (self.checkpoint / name).write_bytes(self.original[name])


def _json_edit(rng: random.Random, data: bytes) -> bytes:
    """Change one value (or key) somewhere in a JSON document; the bytes unchanged if it is not JSON."""
    try:
        doc = json.loads(data)
    except ValueError:
        return data
    holders: list[tuple[Any, Any]] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            holders.append((node, key))
            stack.append(value)
    if not holders:
        return data
    node, key = rng.choice(holders)
    value = node[key]
    choices: list[Any] = [None, True, "", "x" * rng.randint(1, 5), -1, 0, 2 ** 62, 10 ** 30, 1.5, [], {}, [value]]
    if isinstance(value, bool):
        choices.append(not value)
    elif isinstance(value, int):
        choices += [value + 1, value - 1, value * 1000, -value]
    elif isinstance(value, str):
        choices += [value + "x", value[:-1], value.upper()]
    if isinstance(node, dict) and rng.random() < 0.15:
        del node[key]
    elif isinstance(node, dict) and rng.random() < 0.1:
        node[key + "_extra"] = rng.choice(choices)
    else:
        node[key] = rng.choice(choices)
    return json.dumps(doc, indent=1 if data.startswith(b"{\n") else None).encode()


def mutate(rng: random.Random, kind: str, name: str, data: bytes) -> bytes:
    """``data`` changed by one mutation of ``kind``."""
    n = len(data)
    if kind == "truncate":
        return data[:rng.randrange(n)] if n else data
    if kind == "bitflip":
        out = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 8))):
            out[rng.randrange(n)] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == "zero":
        start = rng.randrange(n)
        length = min(n - start, rng.choice((1, 4, 8, 64, n)))
        return data[:start] + bytes(length) + data[start + length:]
    if kind == "insert":
        at = rng.randrange(n + 1)
        return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[at:]
    if kind == "json_edit":
        return _json_edit(rng, data) if name.endswith(".json") else mutate(rng, "bitflip", name, data)
    raise ValueError(kind)


def damage(rng: random.Random, folder: Folder, kind: str) -> dict[str, bytes | None]:
    names = sorted(folder.original)
    if kind == "delete":
        return {rng.choice(names): None}
    if kind == "swap":
        a, b = rng.sample(names, 2)
        return {a: folder.original[b], b: folder.original[a]}
    name = rng.choice(names)
    return {name: mutate(rng, kind, name, folder.original[name])}


def forge(rng: random.Random, folder: Folder, kind: str) -> dict[str, bytes | None]:
    """A mutation of one data file, with the manifest's size and hash made to match it."""
    name = rng.choice(sorted(n for n in folder.original if n != "manifest.json"))
    data = mutate(rng, kind, name, folder.original[name])
    manifest = json.loads(folder.original["manifest.json"])
    entry = manifest["files"][folder.role_of[name]]
    entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    return {name: data, "manifest.json": json.dumps(manifest, indent=1).encode()}


def named_path(error: CheckpointError) -> Path:
    message = str(error)
    assert "\n" not in message, f"not one line: {message!r}"
    return Path(message.split(": ", 1)[0])


def check_damage(folder: Folder, changes: dict[str, bytes | None], expected: dict[str, tuple]) -> list[str]:
    """Problems with the loaders' answers to damage ``changes``; the outcome is recorded in ``changes``."""
    changed = {n for n, d in changes.items() if d != folder.original[n]}
    model_side = {n for n in changed if folder.role_of[n] in ("manifest", *MODEL_ROLES)}
    problems = []
    for what, kwargs, touched in (("model", {}, model_side), ("resume", {"training_state": True}, changed)):
        try:
            ckpt = load_checkpoint(folder.run, **kwargs)
        except CheckpointError as error:
            path = named_path(error)  # a changed manifest may name any file (its names are changed too)
            named_ok = path.name in changed or "manifest.json" in changed
            if not touched or not named_ok or folder.run not in (path, *path.parents):
                problems.append(f"{what}: CheckpointError naming {path} for changes to {sorted(changed)}: {error}")
            continue
        except Exception as error:  # noqa: BLE001  (a crash is what the fuzz looks for)
            problems.append(f"{what}: crashed with {type(error).__name__}: {error}")
            continue
        content = model_content(ckpt) + (training_content(ckpt) if kwargs else ())
        if content != expected[what]:
            problems.append(f"{what}: loaded changed data after changes to {sorted(changed)}")
    return problems


def check_forgery(folder: Folder) -> list[str]:
    problems = []
    for what, kwargs in (("model", {}), ("resume", {"training_state": True})):
        try:
            ckpt = load_checkpoint(folder.run, **kwargs)
        except CheckpointError as error:
            path = named_path(error)
            if folder.checkpoint not in (path, *path.parents):
                problems.append(f"{what}: CheckpointError naming {path}, outside the checkpoint: {error}")
            continue
        except Exception as error:  # noqa: BLE001
            problems.append(f"{what}: crashed with {type(error).__name__}: {error}")
            continue
        weights = next(p for p in folder.checkpoint.iterdir() if p.name.startswith("weights-"))
        stored = safetensors.torch.load(weights.read_bytes())
        state = ckpt.model.state_dict()
        if any(_bits(t) != _bits(state[n]) for n, t in stored.items()):
            problems.append(f"{what}: the model does not hold the tensors of {weights.name}")
    return problems


def run_fuzz(source: Path, work: Path, count: int, seed: int = 0) -> tuple[Counter, list[str]]:
    """Apply ``count`` damage mutations and ``count // 4`` forgeries; (tally, problems)."""
    folder = Folder(source, work)
    reference = load_checkpoint(folder.run, training_state=True)
    expected = {"model": model_content(load_checkpoint(folder.run)),
                "resume": model_content(reference) + training_content(reference)}
    rng, tally, problems = random.Random(seed), Counter(), []
    for i in range(count + count // 4):
        forged = i >= count
        kind = (FORGERY if forged else DAMAGE)[i % len(FORGERY if forged else DAMAGE)]
        changes = (forge if forged else damage)(rng, folder, kind)
        folder.write(changes)
        try:
            found = check_forgery(folder) if forged else check_damage(folder, changes, expected)
        finally:
            folder.restore(changes)
        roles = "+".join(sorted({folder.role_of[n] for n in changes}))
        tally[("forged" if forged else "damage", kind)] += 1
        tally[("file", roles)] += 1
        problems += [f"#{i} {kind} {roles}: {p}" for p in found]
    return tally, problems


def memory_dir(fallback: Path) -> Path:
    """A memory file system where there is one (most of the fuzz's time goes to file writes)."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else fallback


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("fuzz") / "run")


def test_fuzz_whole_run_folder(run_folder: Path, tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(dir=memory_dir(tmp_path)) as work:
        tally, problems = run_fuzz(run_folder, Path(work) / "work", MUTATIONS)
    assert sum(n for (group, _), n in tally.items() if group == "damage") >= 2000
    assert all(tally[("damage", kind)] >= 250 for kind in DAMAGE)
    assert problems == [], f"{len(problems)} problems, first ones:\n" + "\n".join(problems[:10])


if __name__ == "__main__":
    base = Path(tempfile.mkdtemp(dir=memory_dir(Path(tempfile.gettempdir()))))
    started = time.perf_counter()
    tally, problems = run_fuzz(make_run(base / "run"), base / "work", int(sys.argv[1]) if len(sys.argv) > 1 else 2100)
    print(f"{time.perf_counter() - started:.1f} s (including the training run)")
    for key, n in sorted(tally.items()):
        print(key, n)
    print(f"{len(problems)} problems")
    print("\n".join(problems[:20]))
    shutil.rmtree(base)
