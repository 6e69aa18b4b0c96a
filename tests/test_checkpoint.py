"""Checkpoints: exact round trips, exact resume, every kind of bad file, crash safety, no pickle."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from rnnkit.data.vocab import Vocab
from rnnkit.errors import CheckpointError
from rnnkit.checkpoint import (TrainingState, capture_rng_state, load, load_checkpoint, load_training_state,
                               restore_rng_state, save, verify_checkpoint)
from rnnkit.checkpoint import atomic as _atomic
from rnnkit.checkpoint import manifest as _manifest
from rnnkit.checkpoint import registry
from rnnkit.checkpoint.registry import (config_from_json, config_to_json, decode_json, encode_json, model_class,
                                        model_name, register_config, register_model)

V, E, H = 11, 6, 8  # vocab, embedding and hidden sizes of the test model


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    hidden: int = H  # LSTM hidden size
    layers: int = 1  # stacked LSTM layers


@dataclasses.dataclass(frozen=True)
class TinyLMConfig:
    vocab_size: int = V  # tokens
    embed: int = E  # embedding width, shared with the tied softmax
    block: BlockConfig = dataclasses.field(default_factory=BlockConfig)  # nested: rebuilt from its annotation
    dropout: float = 0.1  # on embeddings, so resume exercises the torch RNG
    tags: tuple[str, ...] = ("lm", "tied")  # a tuple, to check tuples stay tuples
    note: str | None = None  # optional text


@register_model(name="tests.TinyLM")
class TinyLM(nn.Module):
    """Embedding -> LSTM -> projection -> softmax layer tied to the embedding."""

    config_class = TinyLMConfig

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed)
        self.drop = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(config.embed, config.block.hidden, config.block.layers, batch_first=True)
        self.proj = nn.Linear(config.block.hidden, config.embed)
        self.head = nn.Linear(config.embed, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("seen", torch.zeros((), dtype=torch.int64))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.drop(self.embed(tokens)))  # (B, T, H)
        return self.head(self.proj(y))  # (B, T, V)


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    size: int = 3  # features


@register_model
class ScaleNet(nn.Module):
    """Built through from_config, which doubles the stored size, to check load uses it."""

    config_class = ScaleConfig
    built_with_from_config = 0

    def __init__(self, config: ScaleConfig, width: int) -> None:
        super().__init__()
        self.config = config
        self.weight = nn.Parameter(torch.randn(width))

    @classmethod
    def from_config(cls, config: ScaleConfig) -> "ScaleNet":
        cls.built_with_from_config += 1
        return cls(config, 2 * config.size)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor, so NaN payloads and signed zeros compare exactly."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def assert_same_bits(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert torch.equal(bits(sa[name]), bits(sb[name])), name


def rewrite(folder: Path, role: str, data: bytes) -> Path:
    """Replace one file and fix its manifest entry, as if the bad bytes had been saved that way."""
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["files"][role]
    (folder / entry["name"]).write_bytes(data)
    entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder / entry["name"]


def file_of(folder: Path, role: str) -> Path:
    return folder / json.loads((folder / "manifest.json").read_text())["files"][role]["name"]


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        tokens = torch.randint(0, V, (4, 7))  # (B, T) drawn from the global torch RNG
        logits = model(tokens[:, :-1])  # (B, T-1, V)
        loss = nn.functional.cross_entropy(logits.reshape(-1, V), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def saved(tmp_path: Path) -> tuple[TinyLM, Path]:
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig())
    return model, save(model, tmp_path / "ckpt", vocab={"tokens": list("abcdefghijk")}, metadata={"task": "test"},
                       training_state=TrainingState(step=1, rng=capture_rng_state()))


# ---- round trips -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_round_trip_is_bitwise_and_keeps_ties(tmp_path: Path, dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    model = TinyLM(TinyLMConfig(note="x", block=BlockConfig(layers=2))).to(dtype)
    with torch.no_grad():
        model.embed.weight[0, 0] = float("nan")  # a NaN and a -0.0 only survive a bit-exact copy
        model.proj.bias[0] = -0.0
        model.seen.fill_(42)
    model.proj.bias.requires_grad_(False)
    again = load(save(model, tmp_path / "ckpt"))
    assert type(again) is TinyLM and again.config == model.config and not again.training
    assert isinstance(again.config.tags, tuple) and isinstance(again.config.block, BlockConfig)
    assert_same_bits(model, again)
    assert again.head.weight is again.embed.weight
    assert len(list(again.parameters())) == len(list(model.parameters()))
    assert not again.proj.bias.requires_grad and again.proj.weight.requires_grad
    with safetensors.safe_open(file_of(tmp_path / "ckpt", "weights"), "pt") as f:  # the tied matrix is stored once
        assert "embed.weight" in f.keys() and "head.weight" not in f.keys()
    if dtype == torch.float32:
        with torch.no_grad():
            model.embed.weight[0, 0] = again.embed.weight[0, 0] = 0.0
        tokens = torch.randint(0, V, (2, 5))
        assert torch.equal(model.eval()(tokens), again(tokens))


def test_vocab_metadata_and_manifest_path(saved: tuple[TinyLM, Path], tmp_path: Path) -> None:
    model, folder = saved
    ckpt = load_checkpoint(folder / "manifest.json", training_state=True)  # the manifest's own path works too
    assert ckpt.vocab == {"tokens": list("abcdefghijk")} and ckpt.metadata == {"task": "test"}
    vocab = Vocab.build("hello, wörld\n")  # the data module's vocabulary survives its to_json/from_json trip
    assert Vocab.from_json(load_checkpoint(save(model, tmp_path / "v", vocab=vocab.to_json())).vocab) == vocab
    assert ckpt.model_type == "tests.TinyLM" and ckpt.path == folder and ckpt.config == model.config
    assert ckpt.training_state.step == 1
    manifest = verify_checkpoint(folder)
    names = {e["name"] for e in manifest["files"].values()}
    assert sorted(os.listdir(folder)) == sorted(names | {"manifest.json"})
    for entry in manifest["files"].values():  # the manifest records exactly what is on disk
        data = (folder / entry["name"]).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["sha256"].startswith(entry["name"].split("-")[1].split(".")[0])


def test_from_config_is_used_and_data_parallel_is_unwrapped(tmp_path: Path) -> None:
    model = ScaleNet.from_config(ScaleConfig(size=2))
    before = ScaleNet.built_with_from_config
    again = load(save(nn.DataParallel(model), tmp_path / "ckpt"))
    assert ScaleNet.built_with_from_config == before + 1 and torch.equal(again.weight, model.weight)


def test_codec_keeps_types_and_writes_strict_json() -> None:
    value = {1: (1.5, float("nan"), [None, True]), "__tuple__": "a plain key", "s": {"x": float("-inf")},
             (2, "k"): np.int64(7)}
    data = encode_json(value, where="v")
    json.dumps(data, allow_nan=False)
    back = decode_json(json.loads(json.dumps(data)), where="v")
    assert list(back) == [1, "__tuple__", "s", (2, "k")]
    assert back[1][0] == 1.5 and math.isnan(back[1][1]) and back[1][2] == [None, True] and isinstance(back[1], tuple)
    assert back["__tuple__"] == "a plain key" and back["s"]["x"] == float("-inf") and back[(2, "k")] == 7


# ---- exact resume ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99)),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
], ids=["adam", "sgd"])
def test_resume_is_bitwise_identical(tmp_path: Path, make_optimizer) -> None:
    torch.manual_seed(2)
    model = TinyLM(TinyLMConfig())
    optimizer = make_optimizer(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    train_steps(model, optimizer, scheduler, 3)
    state = TrainingState(step=3, tokens=72, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                          rng=capture_rng_state(), data_position={"batch": 3}, metrics=[{"step": 3, "loss": 1.0}])
    folder = save(model, tmp_path / "ckpt", training_state=state)
    expected_losses = train_steps(model, optimizer, scheduler, 3)

    ckpt = load_checkpoint(folder, training_state=True)
    resumed = ckpt.model.train()
    optimizer2 = make_optimizer(resumed.parameters())
    optimizer2.param_groups[0]["lr"] = 123.0  # overwritten by the restored state
    optimizer2.load_state_dict(ckpt.training_state.optimizer)
    scheduler2 = torch.optim.lr_scheduler.StepLR(optimizer2, step_size=5, gamma=0.1)
    scheduler2.load_state_dict(ckpt.training_state.scheduler)
    restore_rng_state(ckpt.training_state.rng)
    assert train_steps(resumed, optimizer2, scheduler2, 3) == expected_losses
    assert_same_bits(model, resumed)
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert ckpt.training_state.data_position == {"batch": 3} and ckpt.training_state.tokens == 72


def test_rng_round_trip_with_named_generators(tmp_path: Path) -> None:
    gens = {"py": random.Random(3), "np": np.random.default_rng(4), "legacy": np.random.RandomState(5),
            "torch": torch.Generator().manual_seed(6)}
    random.seed(7), np.random.seed(8), torch.manual_seed(9)

    def draw() -> list:
        return [random.random(), np.random.rand(), torch.rand(()).item(), gens["py"].random(), gens["np"].random(),
                gens["legacy"].rand(), torch.rand((), generator=gens["torch"]).item(), np.random.normal()]

    folder = save(ScaleNet.from_config(ScaleConfig()), tmp_path / "ckpt",
                  training_state=TrainingState(rng=capture_rng_state(gens)))
    first = draw()
    draw()
    restore_rng_state(load_training_state(folder).rng, gens)
    assert draw() == first
    with pytest.raises(ValueError, match=r"generators: expected names captured.*'other'"):
        restore_rng_state(load_training_state(folder).rng, {"other": random.Random()})


def test_scheduler_and_extra_state_round_trip(tmp_path: Path) -> None:
    param = nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([param], lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=1)  # holds inf in its state
    plateau.step(1.0)
    state = TrainingState(scheduler=plateau.state_dict(), metrics=[{"loss": float("nan")}],
                          extra={"ema": torch.arange(3.0), "counts": {0: 1, 1: 2}})
    back = load_training_state(save(ScaleNet.from_config(ScaleConfig()), tmp_path / "ckpt", training_state=state))
    restored = torch.optim.lr_scheduler.ReduceLROnPlateau(torch.optim.SGD([param], lr=0.1))
    restored.load_state_dict(back.scheduler)
    assert restored.state_dict() == plateau.state_dict() and restored.mode_worse == math.inf
    assert math.isnan(back.metrics[0]["loss"]) and back.extra["counts"] == {0: 1, 1: 2}
    assert torch.equal(back.extra["ema"], torch.arange(3.0))


# ---- bad files ---------------------------------------------------------------------------------------------

W = r"weights-[0-9a-f]{16}\.safetensors"
M = r"model-[0-9a-f]{16}\.json"


def test_missing_truncated_and_tampered_files(saved: tuple[TinyLM, Path]) -> None:
    _, folder = saved
    weights = file_of(folder, "weights")
    data = weights.read_bytes()
    weights.write_bytes(data[:-4])
    with pytest.raises(CheckpointError, match=rf"{W}: size mismatch: manifest.json records {len(data)} bytes, "
                                              rf"the file has {len(data) - 4} bytes \(truncated\)"):
        load(folder)
    flipped = bytearray(data)
    flipped[-1] ^= 1  # still a valid safetensors file: only the hash can tell
    weights.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match=rf"{W}: hash mismatch: manifest.json records sha256 [0-9a-f]{{64}}"):
        load(folder)
    weights.unlink()
    with pytest.raises(CheckpointError, match=rf"{W}: missing: manifest.json lists it as the weights file"):
        load(folder)


def test_damaged_training_state_blocks_only_a_resume(saved: tuple[TinyLM, Path]) -> None:
    model, folder = saved
    training = file_of(folder, "training")
    training.write_bytes(training.read_bytes().replace(b'"step": 1', b'"step": 9'))
    assert_same_bits(model, load(folder))  # the model's own files are whole: load, eval and sample work
    assert load_checkpoint(folder).metadata == {"task": "test"}
    for resume in (load_training_state, lambda f: load_checkpoint(f, training_state=True)):
        with pytest.raises(CheckpointError, match=r"training-[0-9a-f]{16}\.json: hash mismatch"):
            resume(folder)


def test_tampering_is_rejected_before_anything_is_parsed(saved: tuple[TinyLM, Path], monkeypatch) -> None:
    _, folder = saved
    weights = file_of(folder, "weights")
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")

    def refuse(*args, **kwargs):
        raise AssertionError("parsed before the hash check")

    monkeypatch.setattr(safetensors.torch, "load", refuse)
    monkeypatch.setattr(TinyLM, "__init__", refuse)
    with pytest.raises(CheckpointError, match="hash mismatch"):
        load(folder)


def test_invalid_json_and_not_safetensors(saved: tuple[TinyLM, Path]) -> None:
    _, folder = saved
    weights = rewrite(folder, "weights", b"PK\x03\x04 this is a zip, not safetensors")
    with pytest.raises(CheckpointError, match=rf"{W}: expected a safetensors file, found a header length"):
        load(folder)
    assert weights.exists()
    rewrite(folder, "model", b'{"model_type": "tests.TinyLM", ')
    with pytest.raises(CheckpointError, match=rf"{M}: expected JSON, found invalid JSON"):
        load(folder)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"manifest.json: expected JSON, found invalid JSON"):
        load(folder)


def edit_model_doc(folder: Path, **changes) -> None:
    doc = json.loads(file_of(folder, "model").read_text())
    for key, value in changes.items():
        if key == "config":
            doc["config"].update(value)
        else:
            doc[key] = value
    rewrite(folder, "model", json.dumps(doc).encode())


def test_unknown_model_type_and_bad_config(tmp_path: Path, saved: tuple[TinyLM, Path]) -> None:
    _, folder = saved
    edit_model_doc(folder, model_type="NoSuchModel")
    with pytest.raises(CheckpointError, match=rf"{M}: unknown model type 'NoSuchModel' \(saved from class "
                                              r"[\w.]*TinyLM\)\. expected a registered model name.*tests\.TinyLM"):
        load(folder)
    edit_model_doc(folder, model_type="tests.TinyLM", config={"hidden_size": 3})
    with pytest.raises(CheckpointError, match=rf"{M}: the stored config does not fit TinyLM.config_class:.*"
                                              r"no field\(s\) \['hidden_size'\]"):
        load(folder)


@pytest.mark.parametrize("damage, message", [
    ("config", r"mis-shaped tensors \['embed\.weight \(file \(11, 6\), model \(12, 6\)\)'\]"),
    ("drop", r"missing tensors \['lstm\.bias_hh_l0'\]"),
    ("add", r"unexpected tensors \['extra\.weight'\]"),
])
def test_weights_that_do_not_match_the_config(saved: tuple[TinyLM, Path], damage: str, message: str) -> None:
    model, folder = saved
    tensors = safetensors.torch.load(file_of(folder, "weights").read_bytes())
    if damage == "config":
        edit_model_doc(folder, config={"vocab_size": V + 1})
    elif damage == "drop":
        del tensors["lstm.bias_hh_l0"]
        rewrite(folder, "weights", safetensors.torch.save(tensors))
    else:
        tensors["extra.weight"] = torch.zeros(2)
        rewrite(folder, "weights", safetensors.torch.save(tensors))
    with pytest.raises(CheckpointError, match=rf"{W}: the weights do not match a TinyLM built from the stored config: {message}"):
        load(folder)


def test_newer_format_and_foreign_manifests(saved: tuple[TinyLM, Path]) -> None:
    _, folder = saved
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(CheckpointError, match=r"manifest.json: format_version 99 is newer than this rnnkit .* reads "
                                              r"\(up to 1\).*Fix: upgrade rnnkit"):
        load(folder)
    escape = {**manifest, "files": {**manifest["files"], "weights": {**manifest["files"]["weights"], "name": "../x.safetensors"}}}
    (folder / "manifest.json").write_text(json.dumps(escape))
    with pytest.raises(CheckpointError, match=r"manifest.json: files\['weights'\] should be .* plain file name"):
        load(folder)
    (folder / "manifest.json").write_text(json.dumps({"name": "some other tool"}))
    with pytest.raises(CheckpointError, match=r"manifest.json: not an rnnkit checkpoint manifest: expected \"format\""):
        load(folder)


def test_paths_that_are_not_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nowhere: no such file or folder"):
        load(tmp_path / "nowhere")
    (tmp_path / "model.pt").write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError, match=r"model\.pt: expected an rnnkit checkpoint folder.*found a file"):
        load(tmp_path / "model.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: not an rnnkit checkpoint: expected manifest.json inside, found an empty folder"):
        load(tmp_path / "empty")
    with pytest.raises(CheckpointError, match=rf"{tmp_path.name}: not an rnnkit checkpoint: .*'model\.pt'"):
        load(tmp_path)


def test_load_training_state_without_one(tmp_path: Path) -> None:
    folder = save(ScaleNet.from_config(ScaleConfig()), tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"ckpt: this checkpoint holds no training state"):
        load_training_state(folder)


# ---- bad input to save and to the registry -----------------------------------------------------------------

def test_save_argument_errors(tmp_path: Path) -> None:
    model = ScaleNet.from_config(ScaleConfig())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"path: expected a folder \(created if missing\), but received .*an existing file"):
        save(model, tmp_path / "file")
    with pytest.raises(ValueError, match=r"vocab: expected a dict of JSON-able values.*Fix: pass vocab.to_json\(\)"):
        save(model, tmp_path / "a", vocab=["a", "b"])
    with pytest.raises(ValueError, match=r"metadata\['when'\]: expected None, bool, int, float, str"):
        save(model, tmp_path / "a", metadata={"when": object()})
    with pytest.raises(ValueError, match=r"TrainingState.step: expected an int >= 0, but received -1"):
        TrainingState(step=-1)
    with pytest.raises(ValueError, match=r"model: expected an instance of a class registered with @register_model"):
        save(nn.Linear(2, 2), tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_registry_rules() -> None:
    assert model_class("tests.TinyLM") is TinyLM and model_name(TinyLM) == "tests.TinyLM"
    assert registry.registered_models()["ScaleNet"] is ScaleNet
    with pytest.raises(ValueError, match=r"name: expected a registered model name \(known: .*tests\.TinyLM.*\), but received 'Nope'"):
        model_class("Nope")

    class Other(nn.Module):
        config_class = ScaleConfig

    with pytest.raises(ValueError, match=r"name: expected a model name not used yet, but received 'tests\.TinyLM', already taken"):
        register_model(Other, name="tests.TinyLM")

    @dataclasses.dataclass
    class Loose:
        a: int = 1  # not frozen

    Other.config_class = Loose
    with pytest.raises(ValueError, match=r"Other.config_class: expected a frozen dataclass"):
        register_model(Other)
    Other.config_class = None
    with pytest.raises(ValueError, match=r"Other.config_class: expected a dataclass type"):
        register_model(Other)


@dataclasses.dataclass(frozen=True)
class Base:
    pass


@register_config(name="tests.Derived")
@dataclasses.dataclass(frozen=True)
class Derived(Base):
    k: int = 2  # a value only the subclass has


@dataclasses.dataclass(frozen=True)
class HolderConfig:
    part: Base = dataclasses.field(default_factory=Derived)  # base-class annotation: Derived is found by @register_config
    other: object = None  # annotated as object: a dataclass stored here cannot be found on load


@register_model(name="tests.Holder")
class Holder(nn.Module):
    config_class = HolderConfig

    def __init__(self, config: HolderConfig) -> None:
        super().__init__()
        self.config = config
        self.w = nn.Parameter(torch.zeros(1))


def test_nested_config_lookup_rules(tmp_path: Path) -> None:
    data = config_to_json(HolderConfig())
    assert data == {"__dataclass__": "HolderConfig", "part": {"__dataclass__": "tests.Derived", "k": 2}, "other": None}
    assert config_from_json(data, HolderConfig) == HolderConfig()
    assert load(save(Holder(HolderConfig(part=Derived(k=5))), tmp_path / "ok")).config.part == Derived(k=5)
    with pytest.raises(ValueError, match=r"model.config: expected a config that survives JSON and back unchanged.*"
                                         r"unknown config dataclass 'BlockConfig'.*Fix: .*@register_config"):
        save(Holder(HolderConfig(other=BlockConfig())), tmp_path / "bad")


# ---- atomic writes -----------------------------------------------------------------------------------------

class Crash(BaseException):
    """A simulated crash: a BaseException, so no `except Exception` on the way can swallow it."""


OS_CALLS = ("open", "write", "fsync", "replace", "unlink")


def model_b() -> TinyLM:
    torch.manual_seed(11)
    return TinyLM(TinyLMConfig())


def save_b(folder: Path, model: TinyLM) -> None:
    """A second checkpoint that differs from the `saved` fixture's in every file."""
    save(model, folder, vocab={"tokens": ["x"]}, metadata={"task": "B"},
         training_state=TrainingState(step=2, rng=capture_rng_state()))


def instrument(monkeypatch: pytest.MonkeyPatch, log: list[tuple[str, str]], fail_at: tuple[str, int] | None) -> None:
    """Log the os-level calls a save makes as (call, file name); raise Crash at the fail_at = (call, n)-th one.

    fsync is logged but skipped: these tests are about order and atomic renames, not about the disk.
    """
    names: dict[int, str] = {}
    for call in OS_CALLS:
        def fake(*args, _call=call, _real=getattr(os, call), **kwargs):
            target = names.get(args[0], "?") if _call in ("write", "fsync") else Path(args[-1 if _call == "replace" else 0]).name
            log.append((_call, target))
            if fail_at == (_call, sum(c == _call for c, _ in log)):
                raise Crash(f"crash at {fail_at}")
            if _call == "fsync":
                return None
            result = _real(*args, **kwargs)
            if _call == "open":
                names[result] = target
            if (_call, target) == ("replace", "manifest.json"):
                log.append(("committed", target))
            return result
        monkeypatch.setattr(os, call, fake)


def checkpoint_files(folder: Path) -> list[str]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return sorted(["manifest.json"] + [e["name"] for e in manifest["files"].values()])


def test_a_crash_at_any_point_leaves_a_whole_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model_a = TinyLM(TinyLMConfig())
    clean: list[tuple[str, str]] = []
    save(model_a, tmp_path / "clean", metadata={"task": "A"})
    with monkeypatch.context() as patch:
        instrument(patch, clean, None)
        save_b(tmp_path / "clean", model_b())
    # The order that makes the manifest rename the single commit point:
    replaced = [target for call, target in clean if call == "replace"]
    commit = clean.index(("replace", "manifest.json"))
    assert len(replaced) == 7 and replaced[-1] == "manifest.json"  # 6 data files, then the manifest
    for i, (call, target) in enumerate(clean):
        if call == "replace":  # each file's bytes are flushed before it gets its name
            temp = clean[i - 1][1]
            assert clean[i - 1] == ("fsync", temp) and temp.endswith(target) and temp.startswith(_atomic.TEMP_PREFIX)
    assert ("fsync", "clean") in clean[clean.index(("replace", replaced[-2])):commit]  # folder synced before commit
    assert ("fsync", "clean") in clean[commit:]
    unlinked = [i for i, (call, _) in enumerate(clean) if call == "unlink"]
    assert unlinked and min(unlinked) > commit  # old files go only after the commit
    points = [(call, n) for call in OS_CALLS for n in range(1, sum(c == call for c, _ in clean) + 1)]
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # the disk is not under test below; keep it fast
    outcomes = []
    for call, n in points:
        folder = tmp_path / f"{call}{n}"
        save(model_a, folder, metadata={"task": "A"}, training_state=TrainingState(step=1))
        log: list[tuple[str, str]] = []
        new = model_b()
        with monkeypatch.context() as patch, pytest.raises(Crash):
            instrument(patch, log, (call, n))
            save_b(folder, new)
        ckpt = load_checkpoint(folder, training_state=True)
        committed = ("committed", "manifest.json") in log
        outcomes.append(committed)
        assert_same_bits(ckpt.model, new if committed else model_a)
        assert (ckpt.metadata["task"], ckpt.training_state.step) == (("B", 2) if committed else ("A", 1)), (call, n)
        assert _atomic.stale_temp_files(folder) == [], (call, n)
        if not committed:  # a failed save removes what it added: the folder is as before
            assert sorted(os.listdir(folder)) == checkpoint_files(folder), (call, n)
        save(model_a, folder)  # the next save clears whatever the crash left behind
        assert sorted(os.listdir(folder)) == checkpoint_files(folder)
    assert outcomes.count(True) >= 2 and outcomes.count(False) >= 20  # crashes after the commit and before it


def test_disk_full_leaves_the_old_checkpoint(saved: tuple[TinyLM, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    model_a, folder = saved
    real_write, writes = os.write, []

    def full(fd: int, data) -> int:
        writes.append(fd)
        if len(writes) == 3:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(CheckpointError, match="No space left on device.*the previous checkpoint there is intact"):
        save_b(folder, model_b())
    monkeypatch.undo()
    assert_same_bits(load(folder), model_a)
    assert sorted(os.listdir(folder)) == checkpoint_files(folder)


def test_a_killed_process_leaves_the_old_checkpoint(saved: tuple[TinyLM, Path]) -> None:
    model_a, folder = saved
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_checkpoint import model_b, save_b
        real = os.replace
        def replace(src, dst):
            if os.path.basename(dst) == "manifest.json":
                os._exit(17)  # killed after every data file is written, before the commit
            real(src, dst)
        os.replace = replace
        save_b({str(folder)!r}, model_b())
    """)
    assert subprocess.run([sys.executable, "-c", script], timeout=120).returncode == 17
    assert any(name.endswith("manifest.json") for name in _atomic.stale_temp_files(folder))
    assert_same_bits(load(folder), model_a)
    save_b(folder, model_b())
    assert sorted(os.listdir(folder)) == checkpoint_files(folder)


def test_load_follows_a_save_that_commits_meanwhile(saved: tuple[TinyLM, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _, folder = saved
    real, raced = _manifest._parse_manifest, []

    def racing(directory: Path, raw: bytes) -> dict:
        manifest = real(directory, raw)
        if not raced:
            raced.append(model_b())
            save_b(folder, raced[0])  # deletes files the manifest just read still names
        return manifest

    monkeypatch.setattr(_manifest, "_parse_manifest", racing)
    assert_same_bits(load(folder), raced[0])


# ---- no pickle ---------------------------------------------------------------------------------------------

def test_no_pickle_torch_load_or_numpy_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("a pickle-based loader or saver was called")

    for module, names in ((pickle, ("load", "loads", "dump", "dumps", "Pickler", "Unpickler")),
                          (torch, ("load", "save")), (np, ("load", "save"))):
        for name in names:
            monkeypatch.setattr(module, name, forbidden)
    torch.manual_seed(3)
    model = TinyLM(TinyLMConfig())
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    train_steps(model, optimizer, scheduler, 1)
    state = TrainingState(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                          rng=capture_rng_state({"data": np.random.default_rng(0)}))
    ckpt = load_checkpoint(save(model, tmp_path / "ckpt", vocab={"a": 1}, training_state=state), training_state=True)
    torch.optim.Adam(ckpt.model.parameters()).load_state_dict(ckpt.training_state.optimizer)
    assert_same_bits(model, ckpt.model)
