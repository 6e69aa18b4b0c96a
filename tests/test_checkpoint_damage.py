"""Damaged run folders (issue 11): what each command reads, and saves that the disk refuses.

- ``eval``, ``sample``, ``info`` and ``rnnkit.load`` read only the model's files, so a damaged
  training state does not block them; ``--resume`` verifies every file and refuses in one line.
- A full disk or a read-only folder at checkpoint time leaves the previous checkpoint whole, and
  the error says so.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit.checkpoint import CHECKPOINT_DIR, CheckpointError, load_checkpoint, load_training_state, save
from rnnkit.cli import main
from test_checkpoint_fuzz import make_run

DAMAGES = ("bitflip", "truncate", "delete")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("damage") / "run")


def files(run: Path, stem: str) -> list[Path]:
    return sorted((run / CHECKPOINT_DIR).glob(f"{stem}-*"))


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "bitflip":
        path.write_bytes(data[:100] + bytes([data[100] ^ 4]) + data[101:])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()


def cli_json(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> tuple[int, dict | None, str]:
    out = tmp_path / "out.json"
    code = main([*args, "--json", str(out)])
    return code, json.loads(out.read_text()) if code == 0 else None, capsys.readouterr().err


@pytest.mark.parametrize("how", DAMAGES)
def test_eval_sample_info_and_load_work_when_only_the_training_state_is_damaged(
        run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, how: str) -> None:
    code, intact, _ = cli_json(["eval", str(run)], tmp_path, capsys)
    assert code == 0
    model = rnnkit.load(run)
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(run, copy)
    for path in files(copy, "training"):
        damage(path, how)
    code, damaged, err = cli_json(["eval", str(copy)], tmp_path, capsys)
    assert code == 0, err
    assert {k: v for k, v in damaged.items() if k != "checkpoint"} == {k: v for k, v in intact.items()
                                                                       if k != "checkpoint"}
    loaded = rnnkit.load(copy)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert main(["sample", str(copy), "--num", "2", "--seed", "0", "--quiet"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    code, info, err = cli_json(["info", str(copy)], tmp_path, capsys)
    assert code == 0, err
    assert "training" not in info and "training-" in info["training_error"]
    with pytest.raises(CheckpointError, match=r"training-[0-9a-f]{16}\.(json|safetensors)"):
        load_training_state(copy)


@pytest.mark.parametrize("how", DAMAGES)
def test_resume_refuses_a_damaged_training_state_in_one_line_naming_the_file(
        run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, how: str) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    damage(files(copy, "training")[0], how)
    code = main(["train", "--resume", str(copy), "--steps", "5"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert f"{copy / CHECKPOINT_DIR}/training-" in err


@pytest.mark.parametrize("how", ("bitflip", "truncate", "delete"))
@pytest.mark.parametrize("stem", ("model", "weights"))
def test_a_damaged_model_file_stops_eval_in_one_line_naming_it(run: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture, how: str,
                                                               stem: str) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    target = files(copy, stem)[0]
    damage(target, how)
    assert main(["eval", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(str(target))


def _writes(folder: Path, model: torch.nn.Module) -> int:
    """How many os.write calls one save of ``model`` into ``folder`` makes."""
    real, count = os.write, [0]

    def counting(fd: int, data: bytes) -> int:
        count[0] += 1
        return real(fd, data)

    os.write = counting
    try:
        save(model, folder, metadata={"n": 1})
    finally:
        os.write = real
    return count[0]


def _assert_intact(folder: Path, expected: dict[str, torch.Tensor], names: list[str]) -> None:
    ckpt = load_checkpoint(folder)
    assert ckpt.metadata == {"n": 0}
    assert all(torch.equal(ckpt.model.state_dict()[k], v) for k, v in expected.items())
    assert sorted(os.listdir(folder)) == names  # no temp files or new data files left behind


def test_a_full_disk_at_any_write_leaves_the_previous_checkpoint(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ckpt"
    old = rnnkit.LSTM(3, 4)
    save(old, folder, metadata={"n": 0})
    expected, names = {k: v.clone() for k, v in old.state_dict().items()}, sorted(os.listdir(folder))
    new = rnnkit.LSTM(3, 4)
    total = _writes(tmp_path / "probe", new)
    assert total >= 3  # model, weights, metadata, manifest: each at least one write
    real = os.write
    for failing in range(1, total + 1):
        calls = [0]

        def full(fd: int, data: bytes) -> int:
            calls[0] += 1
            if calls[0] == failing:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, data)

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(CheckpointError, match=r"No space left on device.*previous checkpoint there is intact"):
            save(new, folder, metadata={"n": 1})
        monkeypatch.setattr(os, "write", real)
        _assert_intact(folder, expected, names)


def test_a_read_only_file_system_leaves_the_previous_checkpoint(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """EROFS from the kernel, simulated: works as root too, where chmod does not stop writes."""
    folder = tmp_path / "ckpt"
    old = rnnkit.GRU(2, 3)
    save(old, folder, metadata={"n": 0})
    expected, names = {k: v.clone() for k, v in old.state_dict().items()}, sorted(os.listdir(folder))
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(CheckpointError, match=r"Read-only file system.*previous checkpoint there is intact"):
        save(rnnkit.GRU(2, 3), folder, metadata={"n": 1})
    monkeypatch.undo()
    _assert_intact(folder, expected, names)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    old = rnnkit.GRU(2, 3)
    save(old, folder, metadata={"n": 0})
    expected, names = {k: v.clone() for k, v in old.state_dict().items()}, sorted(os.listdir(folder))
    folder.chmod(0o555)
    try:
        with pytest.raises(CheckpointError, match=r"Permission denied.*previous checkpoint there is intact"):
            save(rnnkit.GRU(2, 3), folder, metadata={"n": 1})
    finally:
        folder.chmod(0o755)
    _assert_intact(folder, expected, names)


def test_a_first_save_the_disk_refuses_says_nothing_was_written(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(CheckpointError, match="no checkpoint was written there"):
        save(rnnkit.RNN(2, 2), tmp_path / "new")
    monkeypatch.undo()
    assert os.listdir(tmp_path / "new") == []
