"""Issue 10, acceptance 3: an ordinary torch.nn script runs unchanged with rnnkit.nn swapped in.

``tests/scripts/torch_rnn_script.py`` uses nn.LSTM/nn.GRU the usual ways (sequence-first,
PackedSequence, proj_size, a training loop, state_dict save/load). It runs once as written
(the oracle) and once with its marked line swapped for rnnkit.nn; losses, outputs, gradients
and saved tensors agree to 1e-5 (float32), and each run's state_dict loads into the other's model.
"""
from __future__ import annotations

import functools
import types
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit import nn as rnn_nn

SCRIPT = Path(__file__).parent / "scripts" / "torch_rnn_script.py"
SWAP = "rnn_nn = torch.nn  # SWAP: from rnnkit import nn as rnn_nn"


def run(namespace: object | None) -> dict:
    source = SCRIPT.read_text()
    assert SWAP in source
    if namespace is not None:
        source = source.replace(SWAP, "rnn_nn = __rnn_namespace__")
    scope = {"__name__": "torch_rnn_script", "__rnn_namespace__": namespace}
    exec(compile(source, str(SCRIPT), "exec"), scope)  # noqa: S102  (our own test script)
    return scope["main"]()


def engine_namespace(engine: str) -> object:
    if engine == "auto":
        return rnn_nn  # exactly what the one-line swap gives
    return types.SimpleNamespace(LSTM=functools.partial(rnn_nn.LSTM, engine=engine),
                                 GRU=functools.partial(rnn_nn.GRU, engine=engine))


@pytest.fixture(scope="module")
def reference() -> dict:
    return run(None)


@pytest.mark.parametrize("engine", ["auto", "fused", "generic"])
def test_script_runs_unchanged_with_rnnkit(reference, engine):
    ours = run(engine_namespace(engine))
    assert isinstance(ours["model"].lstm, rnnkit.LSTM) and isinstance(ours["model"].gru, rnnkit.GRU)
    torch.testing.assert_close(torch.tensor(ours["losses"]), torch.tensor(reference["losses"]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours["logits"], reference["logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours["h_n"], reference["h_n"], atol=1e-5, rtol=1e-5)
    assert sorted(ours["state_dict"]) == sorted(reference["state_dict"])
    assert list(ours["model"].state_dict()) == list(reference["model"].state_dict())
    for name, tensor in reference["state_dict"].items():
        torch.testing.assert_close(ours["state_dict"][name], tensor, atol=1e-5, rtol=1e-5, msg=name)
    # gradients by parameter: torch names in the reference, found on ours through the state_dict keys
    ours_params = ours["model"].state_dict(keep_vars=True)
    assert set(reference["grads"]) <= set(ours_params) | set(ours["grads"])
    ref_sd = reference["model"].state_dict()
    ours["model"].load_state_dict(ref_sd)  # cross-loading: torch's state_dict into the rnnkit model
    reference["model"].load_state_dict(ours["model"].state_dict())  # and back


def test_gradients_equal_torch_parameter_by_parameter(reference):
    ours = run(rnn_nn)
    by_key = {}
    for key, p in ours["model"].state_dict(keep_vars=True).items():
        by_key[key] = p
    names = {id(p): n for n, p in ours["model"].named_parameters()}
    for key, grad in reference["grads"].items():
        ours_name = names[id(by_key[key])] if key in by_key and id(by_key[key]) in names else key
        torch.testing.assert_close(ours["grads"][ours_name], grad, atol=1e-5, rtol=1e-5, msg=key)
