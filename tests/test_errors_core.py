"""Bad input to the core raises a ValueError naming the argument, the expectation and what came in.

Every case matches the argument's name, and the received value where there is one, with a
regular expression; the layers and the cell API (``cell.scan``) are checked separately.
"""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.cells import ElmanCell, GRUCell, LSTMCell
from rnnkit.engine import BPTT

B, T, F, H = 2, 5, 3, 4


def x_() -> torch.Tensor:
    return torch.randn(B, T, F)


def lstm() -> rnnkit.LSTM:
    return rnnkit.LSTM(F, H)


def state(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.zeros(*shape, dtype=dtype)


LAYER_CASES = {
    "feature size": (lambda: lstm()(torch.randn(B, T, 7)), r"^x: expected F = 3 .*shape \(2, 5, 7\)"),
    "2-D input": (lambda: lstm()(torch.randn(T, F)), r"^x: expected a 3-D tensor .*shape \(5, 3\)"),
    "4-D input": (lambda: lstm()(torch.randn(B, T, F, 1)), r"^x: expected a 3-D tensor .*shape \(2, 5, 3, 1\)"),
    "empty time": (lambda: lstm()(torch.randn(B, 0, F)), r"^x: expected at least one time step .*shape \(2, 0, 3\)"),
    "dtype": (lambda: lstm()(x_().double()), r"^x: expected dtype torch\.float32 .*dtype torch\.float64"),
    "device": (lambda: lstm()(torch.empty(B, T, F, device="meta")), r"^x: expected a tensor on cpu .*on meta"),
    "state shape": (lambda: lstm()(x_(), (state(1, 3, H), state(1, B, H))),
                    r"^state \(h\): expected shape \(1, 2, 4\) .*shape \(1, 3, 4\)"),
    "state layers": (lambda: rnnkit.GRU(F, H, num_layers=2)(x_(), state(1, B, H)),
                     r"^state \(h\): expected shape \(2, 2, 4\) .*shape \(1, 2, 4\)"),
    "state arity": (lambda: lstm()(x_(), state(1, B, H)), r"^state: expected a tuple \(h, c\).*shape \(1, 2, 4\)"),
    "state dtype": (lambda: lstm()(x_(), (state(1, B, H), state(1, B, H, dtype=torch.float64))),
                    r"^state \(c\): expected dtype torch\.float32 .*dtype torch\.float64"),
    "lengths > T": (lambda: lstm()(x_(), lengths=torch.tensor([6, 2])),
                    r"^lengths: expected every length <= T = 5 .*6"),
    "lengths zero": (lambda: lstm()(x_(), lengths=torch.tensor([5, 0])),
                     r"^lengths: expected every length >= 1, .*\[0\]"),
    "lengths negative": (lambda: lstm()(x_(), lengths=torch.tensor([-2, 5])),
                         r"^lengths: expected every length >= 1, .*\[-2\]"),
    "lengths float": (lambda: lstm()(x_(), lengths=torch.tensor([5.0, 2.0])),
                      r"^lengths: expected an integer dtype .*dtype torch\.float32"),
    "lengths list of floats": (lambda: lstm()(x_(), lengths=[5.0, 2.0]),
                               r"^lengths: expected a 1-D integer tensor .*a list of 2 \(5\.0 \(float\)"),
    "lengths device": (lambda: lstm()(x_(), lengths=torch.tensor([5, 2], device="meta")),
                       r"^lengths: expected a tensor on the CPU .*on meta"),
    "lengths count": (lambda: lstm()(x_(), lengths=[5, 2, 1]), r"^lengths: expected shape \(2,\), .*shape \(3,\)"),
    "mask shape": (lambda: lstm()(x_(), mask=torch.ones(B, T - 1, dtype=torch.bool)),
                   r"^mask: expected shape \(B, T\) = \(2, 5\) .*shape \(2, 4\)"),
    "mask dtype": (lambda: lstm()(x_(), mask=torch.ones(B, T)),
                   r"^mask: expected a bool tensor .*dtype torch\.float32"),
    "mask empty row": (lambda: lstm()(x_(), mask=torch.tensor([[True] * T, [False] * T])),
                       r"^mask: expected at least one real step in every row, .*all-False row"),
    "mask and lengths": (lambda: lstm()(x_(), lengths=[5, 2], mask=torch.ones(B, T, dtype=torch.bool)),
                         r"^mask, lengths: expected at most one of the two"),
    "bptt type": (lambda: lstm()(x_(), bptt=5), r"^bptt: expected None or an rnnkit\.engine\.BPTT.*5 \(int\)"),
}


@pytest.mark.parametrize("case", LAYER_CASES)
def test_layer_rejects_bad_input(case):
    call, pattern = LAYER_CASES[case]
    with pytest.raises(ValueError, match=pattern) as info:
        call()
    assert "Fix: " in str(info.value)


def lstm_cell() -> LSTMCell:
    return LSTMCell(H)


def xp() -> torch.Tensor:
    return torch.randn(B, T, 4 * H)  # (B, T, 4H), what an LSTMCell expects


CELL_CASES = {
    "dtype": (lambda: lstm_cell().scan(xp().double()), r"^inputs: expected dtype torch\.float32 .*torch\.float64"),
    "1-D input": (lambda: lstm_cell().scan(torch.randn(4 * H)), r"^inputs: expected a tensor \(B, T, \*features\).*"
                  r"shape \(16,\)"),
    "empty time": (lambda: lstm_cell().scan(torch.randn(B, 0, 4 * H)), r"^inputs: expected at least one time step"),
    "state shape": (lambda: lstm_cell().scan(xp(), h=state(3, H)),
                    r"^initial state 'h': expected shape \(2, 4\) .*shape \(3, 4\)"),
    "state dtype": (lambda: lstm_cell().scan(xp(), c=state(B, H, dtype=torch.float64)),
                    r"^initial state 'c': expected dtype torch\.float32 .*torch\.float64"),
    "state name": (lambda: lstm_cell().scan(xp(), initial_states={"z": state(B, H)}),
                   r"^initial_states: expected names among the cell's states .*'z'"),
    "lengths > T": (lambda: lstm_cell().scan(xp(), lengths=[6, 2]), r"^lengths: expected every length <= T = 5 .*6"),
    "lengths zero": (lambda: lstm_cell().scan(xp(), lengths=torch.tensor([0, 2])), r"^lengths: .*>= 1, .*\[0\]"),
    "lengths negative": (lambda: lstm_cell().scan(xp(), lengths=torch.tensor([3, -1])), r"^lengths: .*>= 1, .*\[-1\]"),
    "lengths float": (lambda: lstm_cell().scan(xp(), lengths=torch.tensor([5.0, 2.0])),
                      r"^lengths: expected an integer dtype .*torch\.float32"),
    "lengths device": (lambda: lstm_cell().scan(xp(), lengths=torch.tensor([5, 2], device="meta")),
                       r"^lengths: expected a tensor on the CPU .*on meta"),
    "mask shape": (lambda: lstm_cell().scan(xp(), mask=torch.ones(3, T, dtype=torch.bool)),
                   r"^mask: expected shape \(B, T\) = \(2, 5\) .*shape \(3, 5\)"),
    "mask device": (lambda: lstm_cell().scan(xp(), mask=torch.ones(B, T, dtype=torch.bool, device="meta")),
                    r"^mask: expected a tensor on the input's device \(cpu\).*on meta"),
    "sequence sizes": (lambda: _two_seq_cell().scan(torch.randn(B, T, 3), torch.randn(B, T + 1, 3)),
                       r"^other: expected the same \(B, T\) = \(2, 5\) .*shape \(2, 6, 3\)"),
    "missing context": (lambda: _context_cell().scan(torch.randn(B, T, 3)), r"every declared context \('ctx',\).*ctx"),
    "too many positionals": (lambda: lstm_cell().scan(xp(), xp()), r"^LSTMCell\(\*sequences\): expected at most 1 "
                             r"positional sequences.*2 positional"),
    "bptt type": (lambda: lstm_cell().scan(xp(), bptt="truncate"), r"^bptt: expected None or an rnnkit\.engine\.BPTT"),
}


@pytest.mark.parametrize("case", CELL_CASES)
def test_cell_scan_rejects_bad_input(case):
    call, pattern = CELL_CASES[case]
    with pytest.raises(ValueError, match=pattern) as info:
        call()
    assert "Fix: " in str(info.value)


# Structured cells know their per-step input width (gates * hidden_size); the engine checks it.
@pytest.mark.parametrize("x,received", [
    (torch.randn(B, T, 7), r"shape \(2, 5, 7\)"),
    (torch.randn(B, T), r"shape \(2, 5\)"),
    (torch.randn(3, T), r"shape \(3, 5\)"),  # B == H == 3: today this broadcasts without an error
    (torch.randn(B, T, 3, 1), r"shape \(2, 5, 3, 1\)"),
    (torch.ones(B, T, 3, dtype=torch.int64), r"dtype torch\.int64"),
], ids=["feature size", "2-D", "2-D broadcastable", "4-D", "integer dtype"])
def test_structured_cell_scan_rejects_wrong_input_shape(x, received):
    with pytest.raises(ValueError, match=r"^inputs: expected .*" + received):
        ElmanCell(3).scan(x)


# ----------------------------------------------------------------------------- engines
@pytest.mark.parametrize("make,why", [
    (lambda: rnnkit.LSTM(F, H, peepholes=True, engine="fused")(x_()), "peepholes"),
    (lambda: rnnkit.RNN(F, H, nonlinearity="identity", engine="fused")(x_()), "identity activation"),
    (lambda: rnnkit.GRU(F, H, engine="fused")(x_(), bptt=BPTT(truncate=2)), "BPTT options"),
    (lambda: rnnkit.GRU(F, H, engine="fused")(x_(), bptt=BPTT(clip_value=1.0)), "BPTT options"),
    (lambda: rnnkit.GRU(F, H, engine="fused")(x_(), bptt=BPTT(tap=rnnkit.GradientTap())), "BPTT options"),
    (lambda: rnnkit.GRU(F, H, engine="fused")(x_(), mask=torch.tensor([[True, False, True, True, True]] * B)),
     "not a prefix"),
    (lambda: GRUCell(H).scan(torch.randn(B, T, 3 * H), engine="fused"), "single-cell scan"),
], ids=["peepholes", "identity", "truncate", "clip", "tap", "holey mask", "cell scan"])
def test_fused_engine_refuses_what_it_cannot_run_and_says_why(make, why):
    with pytest.raises(ValueError, match=r"^engine: expected a configuration the fused backend can run.*" + why):
        make()


@pytest.mark.parametrize("make", [
    lambda: rnnkit.LSTM(F, H, engine="cudnn"),
    lambda: setattr(rnnkit.GRU(F, H), "engine", "cudnn"),
    lambda: rnnkit.from_torch(nn.GRU(F, H), engine="cudnn"),
    lambda: GRUCell(H).scan(torch.randn(B, T, 3 * H), engine="cudnn"),
    lambda: ElmanCell(H)(torch.randn(B, T, H), engine="cudnn"),
], ids=["layer", "setter", "from_torch", "cell scan", "cell call"])
def test_unknown_engine_name(make):
    with pytest.raises(ValueError, match=r"^engine: expected one of \('auto', 'fused', 'generic'\).*cudnn"):
        make()


def test_auto_engine_falls_back_silently_where_fused_cannot_serve():
    y, _ = rnnkit.LSTM(F, H, peepholes=True)(x_(), bptt=BPTT(truncate=2))
    assert y.shape == (B, T, H)


# ----------------------------------------------------------------------------- constructors
@pytest.mark.parametrize("make,pattern", [
    (lambda: rnnkit.RNN(F, 0), r"^hidden_size: expected a positive int.*0 \(int\)"),
    (lambda: rnnkit.LSTM(0, H), r"^input_size: expected a positive int.*0 \(int\)"),
    (lambda: rnnkit.GRU(F, H, num_layers=0), r"^num_layers: expected a positive int.*0 \(int\)"),
    (lambda: rnnkit.GRU(F, H, dropout=1.5), r"^dropout: expected a probability in \[0, 1\].*1\.5"),
    (lambda: ElmanCell(3, "sigmoid"), r"^activation: expected one of \['identity', 'relu', 'tanh'\].*sigmoid"),
    (lambda: LSTMCell(-1), r"^hidden_size: expected an int >= 0.*-1"),
    (lambda: BPTT(truncate=0), r"^BPTT\.truncate: expected None or an int >= 1.*0 \(int\)"),
    (lambda: BPTT(truncate=2.5), r"^BPTT\.truncate: expected None or an int >= 1.*2\.5"),
    (lambda: BPTT(clip_value=-1.0), r"^BPTT\.clip_value: expected None or a positive number.*-1\.0"),
    (lambda: BPTT(clip_norm=0.0), r"^BPTT\.clip_norm: expected None or a positive number.*0\.0"),
    (lambda: rnnkit.from_torch(nn.Linear(3, 4)), r"^module: expected a torch\.nn\.RNN, torch\.nn\.LSTM or torch\.nn"
                                                 r"\.GRU.*Linear"),
    (lambda: rnnkit.LSTM(F, H, proj_size=H), r"^proj_size: expected an int smaller than hidden_size = 4.*4 \(int\)"),
    (lambda: rnnkit.GRU(F, H, proj_size=2), r"^proj_size: expected 0 \(only LSTM has projections\).*2 \(int\)"),
    (lambda: rnnkit.LSTM(F, H, bidirectional=0.1), r"^bidirectional: expected a bool.*0\.1 \(float\)"),
    (lambda: rnnkit.GRU(F, H, batch_first="yes"), r"^batch_first: expected a bool.*'yes' \(str\)"),
    (lambda: rnnkit.RNN(F, H, 1, "sigmoid"), r"^nonlinearity: expected one of .*'sigmoid' \(str\)"),
    (lambda: rnnkit.LSTM(F, H, 1, "yes"), r"^bias: expected a bool.*'yes' \(str\)"),
    (lambda: rnnkit.LSTM(F, H, peepholes=True).to_torch(), r"^layer: expected a configuration torch\.nn implements.*"
                                                          r"peepholes"),
    (lambda: rnnkit.Bidirectional(GRUCell(3), rnnkit.GRU(3, 3)), r"^backward_rnn: expected the same kind.*GRU"),
    (lambda: rnnkit.Stack([]), r"^layers: expected at least one layer.*empty"),
    (lambda: rnnkit.Stack([rnnkit.GRU(F, H)])(x_(), states=[None, None]), r"^states: expected one state per layer "
                                                                         r"\(1\).*2 states"),
    (lambda: rnnkit.Bidirectional(rnnkit.GRU(F, H), rnnkit.GRU(F, H))(
        x_(), mask=torch.tensor([[True, False, True, True, True]] * B)),
     r"^mask: expected right-padded rows .*holes"),
    (lambda: rnnkit.init.spectral(radius=0.0), r"^radius: expected a positive largest singular value.*0\.0"),
    (lambda: rnnkit.init.uniform(1.0, 0.0), r"^low, high: expected low < high.*low=1\.0, high=0\.0"),
    (lambda: rnnkit.init.orthogonal()(torch.empty(3)), r"^tensor: expected a 2-D weight matrix.*shape \(3,\)"),
], ids=lambda v: "x" if callable(v) else re.sub(r"\W+", "", v.split(":")[0]))
def test_constructors_reject_bad_arguments(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_rnn_bad_nonlinearity_names_the_nonlinearity_argument():
    with pytest.raises(ValueError, match=r"^nonlinearity: expected one of .*sigmoid"):
        rnnkit.RNN(F, H, nonlinearity="sigmoid")


# ----------------------------------------------------------------------------- custom cells
class _Cell(rnnkit.Recurrent):
    def state_shape(self, name: str) -> tuple[int, ...]:
        return (3,)

    def step(self, inputs, h, other=None, ctx=None):  # noqa: ANN001, ANN201 - test double
        return inputs + h


def _two_seq_cell() -> rnnkit.Recurrent:
    cell = _Cell()
    cell.sequences = ("inputs", "other")
    return cell


def _context_cell() -> rnnkit.Recurrent:
    cell = _Cell()
    cell.contexts = ("ctx",)
    return cell


@pytest.mark.parametrize("declare,pattern", [
    ({"states": ("h",), "outputs": ("y",)}, r"^_Cell\.outputs: expected every state among the outputs.*\['h'\]"),
    ({"states": ("inputs",)}, r"^_Cell\.sequences/states/contexts: expected distinct names.*'inputs'"),
    ({"sequences": ()}, r"^_Cell\.sequences: expected at least one sequence"),
])
def test_custom_cell_declaration_errors(declare, pattern):
    cell = _Cell()
    for key, value in declare.items():
        setattr(cell, key, value)
    with pytest.raises(ValueError, match=pattern):
        cell.scan(torch.randn(B, T, 3))


def test_custom_cell_step_returning_the_wrong_number_of_outputs():
    cell = _Cell()
    cell.outputs = ("h", "y")
    with pytest.raises(ValueError, match=re.escape("_Cell.step: expected 2 outputs ('h', 'y'), but it returned 1")):
        cell.scan(torch.randn(B, T, 3))


def test_custom_cell_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="unexpected argument 'hh'"):
        _Cell().scan(torch.randn(B, T, 3), hh=torch.zeros(B, 3))
