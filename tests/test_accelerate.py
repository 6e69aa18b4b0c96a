"""``rnnkit.accelerate`` on a torch model nesting nn.LSTM and nn.GRU (issue 10, acceptance 4).

The oracle is the untouched torch model: a deep copy taken before the call.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit import nn as rnn_nn


class EncoderDecoder(nn.Module):
    """Embedding -> bidirectional LSTM encoder (packed, sequence-first) -> GRU decoder -> classifier head."""

    def __init__(self, vocab: int = 20, emb: int = 8, hidden: int = 12, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.encoder = nn.ModuleDict({"rnn": nn.LSTM(emb, hidden, num_layers=2, bidirectional=True)})
        self.bridge = nn.Linear(2 * hidden, hidden)
        self.decoder = nn.Sequential(nn.GRU(emb, hidden, batch_first=True))
        self.head = nn.Linear(hidden, classes)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embed(src), lengths, enforce_sorted=False)  # src (T, B)
        out, (h, _) = self.encoder["rnn"](packed)
        memory, _ = pad_packed_sequence(out)  # (T, B, 2H)
        h0 = torch.tanh(self.bridge(torch.cat([h[-2], h[-1]], dim=1))).unsqueeze(0)  # (1, B, H)
        y, _ = self.decoder[0](self.embed(tgt), h0)  # tgt (B, U) -> (B, U, H)
        return self.head(y + memory.mean(0, keepdim=True).transpose(0, 1)[..., : y.shape[-1]])  # (B, U, C)


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, 20, (9, 4), generator=g)
    lengths = torch.tensor([9, 4, 7, 2])
    tgt = torch.randint(0, 20, (4, 6), generator=g)
    labels = torch.randint(0, 5, (4, 6), generator=g)
    return src, lengths, tgt, labels


@pytest.mark.parametrize("engine", ["auto", "fused", "generic"])
def test_accelerated_model_equals_the_original(engine):
    torch.manual_seed(0)
    model = EncoderDecoder()
    reference = copy.deepcopy(model)
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    params_before = {k: p for k, p in model.state_dict(keep_vars=True).items()}
    assert rnnkit.accelerate(model, engine=engine) is model
    assert isinstance(model.encoder["rnn"], rnn_nn.LSTM) and isinstance(model.decoder[0], rnn_nn.GRU)
    assert list(model.state_dict()) == list(keys)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in keys.items())
    assert all(p is params_before[k] for k, p in model.state_dict(keep_vars=True).items())  # the same objects
    src, lengths, tgt, labels = _batch()
    out, ref = model(src, lengths, tgt), reference(src, lengths, tgt)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    loss = nn.functional.cross_entropy(out.flatten(0, 1), labels.flatten())
    ref_loss = nn.functional.cross_entropy(ref.flatten(0, 1), labels.flatten())
    loss.backward()
    ref_loss.backward()
    theirs = reference.state_dict(keep_vars=True)
    for name, p in model.state_dict(keep_vars=True).items():
        torch.testing.assert_close(p.grad, theirs[name].grad, atol=1e-5, rtol=1e-5, msg=name)


def test_an_optimiser_built_before_the_call_still_trains_the_model():
    torch.manual_seed(1)
    model = EncoderDecoder()
    reference = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    rnnkit.accelerate(model)
    losses = []
    for step in range(5):
        src, lengths, tgt, labels = _batch(step)
        for m, o in ((model, opt), (reference, ref_opt)):
            o.zero_grad()
            loss = nn.functional.cross_entropy(m(src, lengths, tgt).flatten(0, 1), labels.flatten())
            loss.backward()
            o.step()
            losses.append(loss.item())
    ours, theirs = losses[0::2], losses[1::2]
    assert ours[-1] < ours[0]  # it trains
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(theirs), atol=1e-4, rtol=1e-4)
    theirs = reference.state_dict()
    for name, p in model.state_dict().items():
        torch.testing.assert_close(p, theirs[name], atol=1e-4, rtol=1e-4, msg=name)


def test_undo_puts_the_torch_modules_back_with_the_trained_weights():
    model = EncoderDecoder()
    lstm = model.encoder["rnn"]
    rnnkit.accelerate(model)
    model.encoder["rnn"].dropout = 0.25
    with torch.no_grad():
        model.encoder["rnn"].weight_hh_l1_reverse.add_(1.0)
    rnnkit.accelerate(model, undo=True)
    assert model.encoder["rnn"] is lstm and type(model.decoder[0]) is nn.GRU
    assert lstm.dropout == 0.25
    src, lengths, tgt, _ = _batch()
    model(src, lengths, tgt)  # torch's module runs with its parameters


def test_a_bare_module_returns_its_counterpart_and_shared_modules_stay_shared():
    gru = nn.GRU(3, 4)
    layer = rnnkit.accelerate(gru)
    assert isinstance(layer, rnn_nn.GRU) and layer.weight_hh_l0 is gru.weight_hh_l0
    shared = nn.LSTM(3, 4)
    model = nn.ModuleList([shared, nn.Sequential(shared)])
    rnnkit.accelerate(model)
    assert model[0] is model[1][0] and isinstance(model[0], rnn_nn.LSTM)


def test_what_cannot_be_swapped_stays_with_a_warning():
    class MyLSTM(nn.LSTM):
        def forward(self, x, hx=None):
            return super().forward(x * 2, hx)

    hooked = nn.GRU(3, 4)
    hooked.register_forward_hook(lambda m, i, o: None)
    model = nn.ModuleList([MyLSTM(3, 4), hooked, torch.nn.utils.weight_norm(nn.RNN(3, 4), "weight_hh_l0")])
    with pytest.warns(UserWarning, match="left a"):
        rnnkit.accelerate(model)
    assert type(model[0]) is MyLSTM and type(model[1]) is nn.GRU and type(model[2]) is nn.RNN
    with pytest.raises(ValueError, match="^engine: expected one of"):
        rnnkit.accelerate(model, engine="fast")
