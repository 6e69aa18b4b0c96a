"""``rnnkit.Stream``: the state carried between calls, detached, with per-row restarts."""
from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.models import LanguageModel
from rnnkit.models.language_model import LanguageModelConfig, RNNConfig


def _close(a, b, tol=1e-6):
    torch.testing.assert_close(a, b, atol=tol, rtol=0)


@pytest.mark.parametrize("engine", ["fused", "generic"])
def test_chunks_equal_the_whole_sequence_and_the_gradient_stops_between_calls(engine):
    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, 5, num_layers=2, engine=engine)
    x = torch.randn(2, 13, 3, requires_grad=True)
    stream = rnnkit.Stream(layer)
    ys = [stream(x[:, a:a + 4]) for a in range(0, 13, 4)]
    y, (h, c) = layer(x)
    _close(torch.cat(ys, 1), y)
    _close(stream.state[0], h)
    assert not stream.state[0].requires_grad and not stream.state[1].requires_grad
    ys[-1].sum().backward()
    assert x.grad[:, :12].abs().max() == 0 and x.grad[:, 12:].abs().max() > 0  # truncated at the chunk


def test_reset_rows_restart_while_the_others_carry_on():
    torch.manual_seed(1)
    layer = rnnkit.GRU(3, 4)
    x = torch.randn(3, 10, 3)
    stream = rnnkit.Stream(layer)
    stream(x[:, :5])
    stream.reset([2])
    y = stream(x[:, 5:])
    y_whole, _ = layer(x)
    y_fresh, _ = layer(x[2:, 5:])
    _close(y[:2], y_whole[:2, 5:])
    _close(y[2:], y_fresh)
    # the same through reset= in the call, a bool mask in reset(), and a (B, T) reset
    stream.reset()
    stream(x[:, :5])
    _close(stream(x[:, 5:], reset=torch.tensor([False, False, True])), y)
    stream.reset()
    stream(x[:, :5])
    stream.reset(torch.tensor([False, False, True]))
    steps = torch.zeros(3, 5, dtype=torch.bool)
    steps[0, 2] = True
    y2 = stream(x[:, 5:], reset=steps)
    _close(y2[2:], y_fresh)
    _close(y2[:1, 2:], layer(x[:1, 7:])[0])


def test_batch_size_change_is_refused_until_reset():
    stream = rnnkit.Stream(rnnkit.RNN(2, 3))
    stream(torch.randn(4, 3, 2))
    with pytest.raises(ValueError, match=r"batch size 4.*stream\.reset\(\)"):
        stream(torch.randn(5, 3, 2))
    with pytest.raises(ValueError, match=r"rows"):
        stream.reset([7])
    stream.reset()
    assert stream(torch.randn(5, 3, 2)).shape == (5, 3, 3)


def test_state_follows_the_module_dtype_and_layout():
    torch.manual_seed(2)
    layer = rnnkit.GRU(2, 3, batch_first=False)
    stream = rnnkit.Stream(layer)
    x = torch.randn(6, 2, 2, dtype=torch.float64)  # (T, B, F)
    stream(x[:3].float())
    layer.double()
    y = stream(x[3:])
    assert y.dtype == torch.float64 and stream.state.dtype == torch.float64 and stream.batch_size == 2
    _close(y, layer(x)[0][3:], 1e-5)


def test_language_model_and_step_streams():
    torch.manual_seed(3)
    lm = LanguageModel(LanguageModelConfig(vocab_size=7, embedding_size=4, rnn=RNNConfig(cell="lstm", hidden_size=6)))
    lm.eval()
    tokens = torch.randint(0, 7, (2, 8))
    stream = rnnkit.Stream(lm)
    out = torch.cat([stream(tokens[:, :3]), stream(tokens[:, 3:], reset=torch.tensor([True, False]))], 1)
    _close(out[1], lm(tokens)[0][1])
    _close(out[0, 3:], lm(tokens[:1, 3:])[0][0])
    steps = rnnkit.Stream(lm)
    per = [steps.step(tokens[:, t], reset=torch.tensor([t == 3, False])) for t in range(8)]
    _close(torch.stack(per, 1), out, 1e-5)


# ----------------------------------------------------------------------------- a failed call loses nothing
@pytest.mark.parametrize("bad", ["features", "reset"])
def test_a_failed_call_keeps_the_pending_resets_for_the_next_call(bad):
    torch.manual_seed(2)
    layer = rnnkit.GRU(3, 4)
    x = torch.randn(3, 10, 3)
    stream = rnnkit.Stream(layer)
    stream(x[:, :5])
    state = stream.state
    stream.reset([2])
    with pytest.raises(ValueError):
        if bad == "features":
            stream(torch.randn(3, 5, 7))  # wrong F: the module refuses it
        else:
            stream(x[:, 5:], reset=torch.ones(3, 5))  # a float reset: the module refuses it
    assert stream.state is state  # the failed call changed nothing
    y = stream(x[:, 5:])
    y_whole, _ = layer(x)
    y_fresh, _ = layer(x[2:, 5:])  # the oracle: row 2 from zeros, rows 0-1 carried on
    _close(y[:2], y_whole[:2, 5:])
    _close(y[2:], y_fresh)


def test_a_failed_step_keeps_the_pending_resets():
    torch.manual_seed(3)
    layer = rnnkit.LSTM(3, 4)
    x = torch.randn(2, 6, 3)
    stream = rnnkit.Stream(layer)
    stream(x[:, :5])
    stream.reset([0])
    with pytest.raises(ValueError):
        stream.step(torch.randn(2, 9))  # wrong F
    y = stream.step(x[:, 5])
    y_whole, _ = layer(x)
    y_fresh, _ = layer(x[:1, 5:])
    _close(y[1], y_whole[1, 5])
    _close(y[0], y_fresh[0, 0])


def test_a_failed_first_call_does_not_fix_the_batch_size():
    stream = rnnkit.Stream(rnnkit.GRU(3, 4))
    with pytest.raises(ValueError):
        stream(torch.randn(5, 4, 7))  # wrong F, batch 5
    assert stream.batch_size is None
    assert tuple(stream(torch.randn(2, 4, 3)).shape) == (2, 4, 4)  # batch 2 is this stream's
    assert stream.batch_size == 2


# ----------------------------------------------------------------------------- a tagger streams too
def _tagger(cell, learn_h0):
    from rnnkit.models import SequenceTagger, TaggerConfig

    torch.manual_seed(5)
    model = SequenceTagger(TaggerConfig(vocab_size=7, learn_initial_state=learn_h0,
                                        rnn=RNNConfig(cell=cell, hidden_size=6, num_layers=2)))
    if learn_h0:
        with torch.no_grad():
            model.h0.normal_()  # a learned start that differs from zeros
    return model.eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
@pytest.mark.parametrize("learn_h0", [False, True])
def test_a_tagger_streamed_in_two_calls_equals_one_call(cell, learn_h0):
    """The oracle: the same text in one call. The second call used to get the state as ``lengths``."""
    model = _tagger(cell, learn_h0)
    tokens = torch.randint(0, 7, (3, 11))
    whole, _ = model(tokens)
    stream = rnnkit.Stream(model)
    streamed = torch.cat([stream(tokens[:, :4]), stream(tokens[:, 4:])], 1)  # (B, T, O)
    _close(streamed, whole, 1e-5)
    steps = rnnkit.Stream(model)
    _close(torch.stack([steps.step(tokens[:, t]) for t in range(11)], 1), whole, 1e-5)


def test_a_streamed_tagger_restarts_rows():
    model = _tagger("gru", False)
    tokens = torch.randint(0, 7, (3, 9))
    stream = rnnkit.Stream(model)
    stream(tokens[:, :4])
    stream.reset([1])
    y = stream(tokens[:, 4:])
    _close(y[[0, 2]], model(tokens)[0][[0, 2], 4:], 1e-5)
    _close(y[1], model(tokens[1:2, 4:])[0][0], 1e-5)  # row 1 from the start state, alone


def test_a_tagger_with_a_learned_start_refuses_resets_clearly():
    """Resets restart rows from zeros, not from the learned h0: refused, naming the fix."""
    model = _tagger("lstm", True)
    stream = rnnkit.Stream(model)
    tokens = torch.randint(0, 7, (2, 5))
    stream(tokens)
    stream.reset([0])
    with pytest.raises(ValueError, match=r"reset.*learn_initial_state.*Fix"):
        stream(tokens)
