"""Forged checkpoints that keep their hashes consistent: duplicate legacy keys and wrongly typed configs.

Both are reachable only by a forgery (damage breaks the hashes), but a forgery must still fail
with a one-line ``CheckpointError`` naming the file, never load changed data silently.
Also: equal weights give equal file bytes, so a user may compare checkpoints by their SHA-256.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

import rnnkit
from rnnkit.checkpoint import CheckpointError, load

from test_checkpoint_untrusted import forge_config, reber_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"


def _reseal(folder: Path, role: str, data: bytes) -> Path:
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["files"][role]
    path = folder / entry["name"]
    path.write_bytes(data)
    entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_a_file_holding_a_legacy_key_and_its_new_name_is_refused(tmp_path: Path) -> None:
    """Old checkpoints store ``layers.0.fwd.cell.weight`` where new ones store ``weight_hh_l0``.

    A forged file holding both names of one tensor must not silently keep either of them.
    """
    folder = tmp_path / "legacy"
    shutil.copytree(FIXTURES / "legacy_lstm_classifier", folder)
    weights = next(folder.glob("weights-*"))
    stored = safetensors.torch.load(weights.read_bytes())
    model = load(folder)  # the honest fixture loads; its renames map each old name to a new one
    renames = {}
    for prefix, module in model.named_modules():
        legacy = getattr(module, "legacy_state_dict_keys", None)
        if callable(legacy):
            dot = prefix + "." if prefix else ""
            renames.update({dot + old: dot + new for old, new in legacy().items()})
    old = next(name for name in stored if name in renames)
    forged = dict(stored)
    forged[renames[old]] = torch.full_like(stored[old], 7.0)  # a second, different tensor under the new name
    path = _reseal(folder, "weights", safetensors.torch.save(forged))
    with pytest.raises(CheckpointError) as caught:
        load(folder)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert old in message and renames[old] in message


@pytest.mark.parametrize("edit, field, expected", [
    (lambda c: c.__setitem__("rnn", 5), "config.rnn", "RNNConfig"),
    (lambda c: c["rnn"].__setitem__("num_layers", 2.5), "config.rnn.num_layers", "int"),
    (lambda c: c["rnn"].__setitem__("num_layers", True), "config.rnn.num_layers", "int"),
    (lambda c: c["rnn"].__setitem__("cell", 3), "config.rnn.cell", "str"),
    (lambda c: c["rnn"].__setitem__("bidirectional", "yes"), "config.rnn.bidirectional", "bool"),
])
def test_a_wrongly_typed_config_field_is_named(tmp_path: Path, edit, field: str, expected: str) -> None:
    folder = reber_checkpoint(tmp_path / "ckpt", hidden=8)
    forge_config(folder, edit)
    with pytest.raises(CheckpointError) as caught:
        load(folder)
    message = str(caught.value)
    assert message.startswith(str(folder)) and "\n" not in message
    assert field in message and expected in message and "AttributeError" not in message


def test_honest_configs_still_load_with_every_field_type(tmp_path: Path) -> None:
    layer = rnnkit.LSTM(3, 5, num_layers=2, bidirectional=True, dropout=0.25)
    back = load(rnnkit.save(layer, tmp_path / "lstm"))
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), layer.state_dict().values()))
    tagger = reber_checkpoint(tmp_path / "tagger", hidden=8)
    assert load(tagger) is not None


def test_equal_weights_give_equal_file_bytes_across_processes(tmp_path: Path) -> None:
    """safetensors writes its metadata map in hash order; rnnkit sorts it so the bytes are reproducible."""
    script = (
        "import sys, torch, rnnkit\n"
        "torch.manual_seed(0)\n"
        "rnnkit.save(rnnkit.LSTM(3, 4), sys.argv[1], metadata={'b': 1, 'a': 2, 'c': 3})\n")
    digests = set()
    for i in range(4):
        out = tmp_path / f"run{i}"
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, timeout=120)
        weights = next(out.glob("weights-*"))
        digests.add(hashlib.sha256(weights.read_bytes()).hexdigest())
    assert len(digests) == 1, digests
