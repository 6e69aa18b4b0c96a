"""--device for train, eval and sample: the CPU plumbing here; the CUDA paths are marked and skip without a GPU."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.training.config import make_config
from rnnkit.training.device import resolve_device, to_device
from rnnkit.training.distributed import backend_for
from rnnkit.training.tasks import Batch
from rnnkit.training.trainer import Trainer

TINY = ["--task", "reber", "--hidden", "8", "--steps", "4", "--eval-every", "2", "--eval-size", "20", "--no-plot",
        "--no-tensorboard", "--quiet"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_is_cuda_only_when_available_and_bad_devices_are_refused() -> None:
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device: expected auto, cpu, cuda or cuda:N, but received gpu\."):
        make_config("reber", overrides={"device": "gpu"})
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device: expected a device this machine has.*Fix: pass --device cpu"):
            resolve_device("cuda:0")


def test_nccl_only_for_cuda_models() -> None:
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 1)) == "nccl"


def test_to_device_moves_every_tensor_of_a_batch_and_a_carried_state() -> None:
    batch = Batch(inputs=torch.zeros(2, 3), targets=torch.ones(2, 3), mask=None, sequences=2, tokens=6)
    moved = to_device(batch, torch.device("meta"))
    assert moved.inputs.device.type == moved.targets.device.type == "meta" and moved.mask is None
    state = to_device((torch.zeros(1), torch.ones(1)), torch.device("meta"))
    assert all(t.device.type == "meta" for t in state) and to_device(None, torch.device("meta")) is None


def test_device_flags_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", *TINY, "--device", "cpu", "--out", str(run), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["device"] == "cpu"
    assert main(["eval", str(run), "--device", "cpu", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["device"] == "cpu"
    assert main(["sample", str(run), "--device", "cpu", "--num", "2", "--seed", "0", "--json", "-"]) == 0
    capsys.readouterr()
    code = main(["train", *TINY, "--device", "tpu", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "--device" in err and len(err.strip().splitlines()) == 1, err


@cuda
def test_training_on_cuda_keeps_model_batches_and_state_there(tmp_path: Path) -> None:
    config = make_config("text", overrides=dict(hidden_size=16, num_layers=1, embedding_size=8, batch_size=4, bptt=8,
                                                steps=6, eval_every=3, time_budget=None, plot=False,
                                                tensorboard=False, out=str(tmp_path), device="cuda"))
    result = Trainer(config, progress=False).fit()
    assert all(p.device.type == "cuda" for p in result.model.parameters())
    assert result.summary["device"].startswith("cuda")


@cuda
def test_a_cuda_run_resumes_on_the_cpu(tmp_path: Path) -> None:
    base = dict(hidden_size=8, steps=6, eval_every=3, eval_size=20, plot=False, tensorboard=False, out=str(tmp_path))
    Trainer(make_config("reber", overrides={**base, "steps": 3, "device": "cuda"}), progress=False).fit()
    resumed = Trainer(make_config("reber", overrides={**base, "device": "cpu"}), progress=False).fit(resume=tmp_path)
    assert resumed.summary["steps"] == 6 and resumed.summary["device"] == "cpu"
