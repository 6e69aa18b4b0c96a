"""A regularised layer never becomes a plain torch.nn module silently (torch.nn has no
input_dropout, recurrent_dropout, zoneout or weight_drop).

* The dropouts are the identity in eval mode, so ``to_torch(drop_regularisers=True)`` gives a
  module equal to the layer in eval mode; without the opt-in, ``to_torch`` refuses, naming the
  option and the fix.
* Zoneout's eval mode is its expectation (each new state mixed with the old one), which no
  torch.nn module computes: ``to_torch`` refuses it even with the opt-in.
* ``layer.regularisers`` cannot be assigned behind the config's back (the config is what
  checkpoints and ``to_torch`` read), and ``rnnkit.nn`` (torch's signature, no regularisers)
  names the option when asked to rebuild a regularised config.

The oracle is the torch.nn module holding the same weights (and, for zoneout, the same layer
without zoneout).
"""
from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit import nn as rnn_nn

DROPOUTS = ["input_dropout", "recurrent_dropout", "weight_drop"]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", DROPOUTS)
def test_to_torch_refuses_a_dropout_it_would_drop(name, training):
    layer = rnnkit.LSTM(4, 6, num_layers=2, **{name: 0.3}).train(training)
    for convert in (layer.to_torch, lambda: rnnkit.layers.to_torch(layer)):
        with pytest.raises(ValueError, match=rf"^{name}: expected 0 .*torch\.nn has no {name}.*"
                                             r"Fix: .*drop_regularisers=True") as info:
            convert()
        assert "\n" not in str(info.value) and len(str(info.value)) < 400


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("name", DROPOUTS)
def test_drop_regularisers_gives_the_eval_mode_equal_module(kind, name):
    torch.manual_seed(0)
    layer = getattr(rnnkit, kind)(4, 6, num_layers=2, bidirectional=True, **{name: 0.4}).double()
    module = layer.to_torch(drop_regularisers=True)
    assert type(module) is getattr(torch.nn, kind) and module.training  # the layer's mode is kept
    layer.eval(), module.eval()
    x = torch.randn(3, 7, 4, dtype=torch.float64)
    ours, theirs = layer(x), module(x)
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-12, rtol=1e-12)
    # and the dropout really acted in training mode: the plain module is not the trained-mode layer
    layer.train()
    torch.manual_seed(1)
    assert not torch.allclose(layer(x)[0], theirs[0])


@pytest.mark.parametrize("training", [True, False])
def test_to_torch_refuses_zoneout_even_when_asked_to_drop(training):
    layer = rnnkit.GRU(4, 6, zoneout=0.25, recurrent_dropout=0.1).train(training)
    for drop in (False, True):
        with pytest.raises(ValueError, match=r"^zoneout: expected 0 .*eval mode.*Fix: ") as info:
            layer.to_torch(drop_regularisers=drop)
        assert "\n" not in str(info.value)


def test_zoneout_eval_mode_really_differs_from_the_plain_layer():
    # Why zoneout is refused: in eval mode it still mixes in the old state (its expectation).
    torch.manual_seed(0)
    zoned = rnnkit.LSTM(4, 6, zoneout=0.25).double().eval()
    plain = rnnkit.LSTM(4, 6).double().eval()
    plain.load_state_dict(zoned.state_dict())
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(plain(x)[0], plain.to_torch()(x)[0], atol=1e-12, rtol=1e-12)
    assert (zoned(x)[0] - plain(x)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnn_nn.LSTM])
def test_regularisers_are_not_assignable_behind_the_config(cls):
    layer = cls(4, 6)
    with pytest.raises(AttributeError, match=r"^regularisers: expected no assignment.*Fix: build .*zoneout=0\.1"):
        layer.regularisers = rnnkit.Regularisers(zoneout=0.1)
    assert not layer.regularisers.active and layer.to_torch() is not None


def test_rnnkit_nn_from_config_names_the_regulariser_it_cannot_take():
    config = rnnkit.LSTM(4, 6, zoneout=0.1, batch_first=False).config
    with pytest.raises(ValueError, match=r"^zoneout: expected 0 for rnnkit\.nn\.LSTM .*Fix: .*rnnkit\.LSTM\.from_config"):
        rnn_nn.LSTM.from_config(config)
    rebuilt = rnnkit.LSTM.from_config(config)  # the fix the message gives
    assert rebuilt.config == config and rebuilt.regularisers.zoneout == 0.1
